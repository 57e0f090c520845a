"""Control: the one command path (allow-list, command, readback, audit), the after-hours sweep, and the scheduler
that runs it.
"""
