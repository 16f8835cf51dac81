"""Launching radbatch on one machine (`make run`) and in containers."""
