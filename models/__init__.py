"""Pure modelling logic: estimators, calibration, bands, metrics, reasons, point rules."""
