"""The real-peer scenarios of integration/run.sh, one module per concern
(see test_real_peers.py, the driver, for the list). Python stdlib only."""
