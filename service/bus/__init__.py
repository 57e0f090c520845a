"""Scale-out over NATS JetStream: the protocol, edge collectors and cores that own a site by lease."""
