"""Victims from anywhere: where the model an attacker queries comes from.

A victim's ``source`` (config key ``victims.<name>.source``) says how it is obtained:

- ``train``       trained by the workflow from the config (:mod:`stealbench.models.victims`);
- ``checkpoint``  a state-dict file of a registered architecture;
- ``torchscript`` a scripted or traced module file;
- ``torchvision`` a torchvision classification model by name, with a local weights file;
- ``remote``      an Open Inference Protocol (KServe V2) endpoint (:mod:`.remote`).

Every external victim declares its input contract (:mod:`.contract`), its classes and its
labelled test data. :mod:`.sources` says what each source allows (torch-free, for the config
checks); :mod:`.local` loads the model files of the local sources; :mod:`.probe` runs one batch
through every external victim before any job (``rules/common.smk``); the workflow's
``import_victim`` job writes what ``train_victim`` writes, and
:func:`stealbench.models.victims.load_victim` dispatches on the recorded source. Whatever the
source, what the rest of the pipeline sees is one thing: the victim's posteriors for uint8
(N, H, W, C) images, cached per query (design.md: the query cache is the boundary).
"""
