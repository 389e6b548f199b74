"""Point of sale at the store box: receipts and the till's peripherals."""
