"""The four gRPC services: thin adapters between gRPC and the library (`inspatio_world`)."""
