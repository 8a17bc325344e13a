"""Speech, the third modality: tasks on Spoken Shapes (:mod:`mmkeras.data.spoken`) with the
audio encoder (:mod:`mmkeras.nn.audio`). Recognition decodes with the caption decoders, so
this package sits above ``caption`` and ``tasks``, beside ``generation``.
"""
