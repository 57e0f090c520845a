"""Onboarding a building: devices discovered on the broker and Modbus, devices left to place."""
