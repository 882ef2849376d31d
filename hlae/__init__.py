"""hlae: hierarchical LSTM autoencoders for multivariate time series of unequal length."""

from hlae.anomaly import AnomalyDetector
from hlae.doctor import diagnose, diagnose_model
from hlae.estimator import HierarchicalAutoencoder, load

__all__ = ["AnomalyDetector", "HierarchicalAutoencoder", "diagnose", "diagnose_model", "load"]
__version__ = "0.1.0"
