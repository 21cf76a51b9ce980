"""Bridgeline: a self-hosted multi-party call server that speaks Plivo's PHLO MPC API."""
