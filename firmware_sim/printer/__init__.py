"""Simulated ESC/POS receipt printer (TCP 9100 or serial) with a cash drawer."""
