"""Device simulators: they talk to rpm only over MQTT and HTTP, like a device."""
