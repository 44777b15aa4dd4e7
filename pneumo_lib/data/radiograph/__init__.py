"""A layered model of a child's AP chest radiograph: anatomy, acquisition, pathology, rendering.

The phantom generator (:mod:`pneumo_lib.data.phantom`) draws its images with this package:

* :mod:`~pneumo_lib.data.radiograph.anatomy`: a per-patient random anatomy (age, size, build)
  turned into attenuation layers (soft tissue, lungs, heart and mediastinum, airways, spine,
  ribs, clavicles, scapulae, bronchovascular tree) that are summed along the rays;
* :mod:`~pneumo_lib.data.radiograph.acquisition`: how a study is taken (pose, inspiration,
  exposure, contrast, gamma, quantum noise, detector blur, collimation, burnt-in text, ECG
  leads) and the named *hospital* profiles (``"A"``, the default, and ``"B"``);
* :mod:`~pneumo_lib.data.radiograph.pathology`: bacterial (lobar or segmental consolidation
  in one lung, air bronchograms, silhouetting) and viral (bilateral perihilar interstitial)
  pneumonia with a severity from subtle to obvious, and their masks;
* :mod:`~pneumo_lib.data.radiograph.render`: one study from its seeds: image, lesion mask
  and label maps.

Coordinates: a patient frame with ``X`` to the image's right (the patient's left: an AP
film is viewed as if facing the patient) and ``Y`` downwards, the lung fields spanning about
``Y = -0.75`` (apices) to ``Y = 0.45`` (costophrenic angles). "Right lung" always means the
patient's right lung, on the image's left.

This is generated data for teaching and testing; it is not clinical evidence.
"""

from pneumo_lib.data.radiograph.acquisition import HOSPITAL_DIFFERENCES, HOSPITALS, Hospital, get_hospital
from pneumo_lib.data.radiograph.pathology import KINDS, SEVERITY
from pneumo_lib.data.radiograph.render import Study, render_study

__all__ = ["HOSPITALS", "HOSPITAL_DIFFERENCES", "Hospital", "KINDS", "SEVERITY", "Study",
           "get_hospital", "render_study"]
