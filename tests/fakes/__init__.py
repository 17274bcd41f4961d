"""Fake Lambda handler modules, each named for the behaviour it triggers (cog's habit)."""
