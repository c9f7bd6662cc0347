"""The caption service."""
