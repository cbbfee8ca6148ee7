"""Layers and architectures shared by the learners."""
