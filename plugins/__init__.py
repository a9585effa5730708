"""geodetect's built-in detectors, registered through the ``geodetect.detectors`` entry points."""
