"""Published networks read into genflow: EDM's snapshot pickles (NVlabs/edm), without torch."""
from genflow.pretrained.edm import EDMNetwork, assign_params, edm_network, load_edm_network
from genflow.pretrained.edm_pickle import EDM_GLOBALS, EDMPickleError, PersistentObject, read_edm_pickle

__all__ = ["EDMNetwork", "EDMPickleError", "EDM_GLOBALS", "PersistentObject", "assign_params", "edm_network",
           "load_edm_network", "read_edm_pickle"]
