"""gRPC plumbing: generated stubs, server bootstrap, conversions between messages and library types."""
