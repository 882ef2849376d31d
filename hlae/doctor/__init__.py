"""The doctor: measure why an LSTM autoencoder set-up does not train, and say what to change.

:func:`diagnose` checks a :class:`~hlae.HierarchicalAutoencoder` set-up on your data;
:func:`diagnose_model` checks your own PyTorch module. Both return a :class:`Report` of
:class:`Finding` objects ranked with the most likely cause first.
"""

from hlae.doctor._api import diagnose, diagnose_model
from hlae.doctor._probes import lr_range_test
from hlae.doctor._report import CHECKS, Finding, Report

__all__ = ["diagnose", "diagnose_model", "lr_range_test", "Finding", "Report", "CHECKS"]
