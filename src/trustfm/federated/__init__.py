"""Federated fine-tuning on Flower: clients train with the project's own loop, only model updates travel.

``trustfm federate CONFIG`` runs the ``federated:`` block of a run config, in simulation (every client in this
process, no Ray) or against a Flower SuperLink (``--superlink HOST:PORT``); either way the result is a normal
run folder.
"""
