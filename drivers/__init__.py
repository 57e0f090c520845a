"""Device drivers: Modbus and MQTT devices in, wattkeeper readings out; see drivers/README.md."""
