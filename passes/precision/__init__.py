"""Precision passes: INT8 post-training quantization (QDQ) and BF16/FP16 mixed precision."""
