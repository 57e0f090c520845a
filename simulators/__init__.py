"""Device simulators: a physical model of a site exposed over Modbus TCP and MQTT like real hardware."""
