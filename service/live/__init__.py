"""Live state: the latest value of every device point, room and supply views, source transfers, and the in-
process event bus for SSE.
"""
