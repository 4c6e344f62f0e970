"""Ray Train around the Ray-free training core (a2v_core.training): the trainer builder, the one worker loop both training jobs run, validation and the resume guard."""
