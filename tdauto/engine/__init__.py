"""Orchestration: executions, the chain of action tasks, and the engine's system jobs."""
