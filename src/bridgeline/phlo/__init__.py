"""PHLO definitions: the file/JSON format users write, and template filling from run payloads."""
