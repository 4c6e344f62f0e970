"""``a2v info --config FILE [--job pretrain|finetune] [--json]``: what a user planning a run needs to know.
``a2v info --fields --job JOB``: every config key of a job, its type, default and meaning.

Input rate and the band the model hears, the front end (Sinc taps and stride, conv strides)
and its cost per second of audio relative to the 8 kHz preset, parameter counts (encoder,
student incl. decoder, EMA teacher), frame rate, receptive field, frames per clip, the masked fraction of the configured masking (simulated) and
audio seconds per optimizer step (per worker x workers x accumulation).
"""

from __future__ import annotations

import json
from pathlib import Path

from a2v_core.config import JOBS, EmaConfig, MaskingConfig, ModelConfig, TrainJob
from a2v_core.config_loader import field_docs, load_config
from a2v_core.config_tools import TOOLS
from a2v_core.encoder import count_params
from a2v_core.errors import InputError
from a2v_core.masking import expected_masked_fraction
from a2v_core.pretrain import Data2VecPretrainer
from a2v_core.rates import RATE_PRESETS
from pipelines.runtime.jobargs import SET_HELP, command, parser


def summarize(job: TrainJob) -> dict:
    """Sizes and rates of a training job (a fine-tuning job: of its encoder as pretraining
    would build it, and the default pretraining masking)."""
    masking = getattr(job, "masking", MaskingConfig())
    model = Data2VecPretrainer(job.model, masking, getattr(job, "ema", EmaConfig()))
    frames = int(round(job.data.clip_s * job.model.frame_rate_hz))
    teacher = count_params(model.teacher)
    at_8k = ModelConfig(preset=job.model.preset)
    return {
        "preset": job.model.preset,
        "sample_rate_hz": job.model.sample_rate_hz,
        "band_hz": list(job.model.band_hz),
        "sinc_taps": job.model.sinc_taps,
        "sinc_stride": job.model.sinc_stride,
        "conv_strides": [s for _, _, s in job.model.conv_layers],
        "frontend_cost_vs_8khz": job.model.frontend_macs_per_s / at_8k.frontend_macs_per_s,
        "params_encoder": count_params(model.encoder),
        "params_student": count_params(model) - teacher,
        "params_teacher": teacher,
        "frame_rate_hz": job.model.frame_rate_hz,
        "receptive_field_ms": 1000 * job.model.receptive_field_samples / job.model.sample_rate_hz,
        "frames_per_clip": frames,
        "masked_fraction": expected_masked_fraction(masking.mask_prob, masking.mask_length, frames),
        "audio_s_per_step": job.data.clip_s
        * job.optim.batch_size
        * job.optim.grad_accum
        * job.cluster.num_workers,
    }


def print_fields(job: str) -> None:
    """One line per config key of ``job``: key, type, default, description (a tool
    command's keys are its flags)."""
    rows = field_docs(JOBS[job] if job in JOBS else TOOLS[job])
    width = max(len(key) for key, *_ in rows)
    if job in JOBS:
        print(f"config keys of a2v {job} (--set KEY=VALUE; YAML: nested groups)")
    else:
        print(f"config of a2v {job}: one flag per key (--KEY-NAME VALUE)")
    for key, kind, default, text in rows:
        shown = "(required)" if default == "(preset)" and job in TOOLS else repr(default)
        print(f"  {key:<{width}}  {kind} = {shown}  {text}")


def print_summary(info: dict) -> None:
    """The summary as the table ``a2v info`` prints."""
    low, high = info["band_hz"]
    print(f"preset            {info['preset']}")
    print(
        f"input rate        {info['sample_rate_hz']} Hz; hears {low:g}-{high:g} Hz (files at other "
        "rates are resampled to it)"
    )
    print(
        f"front end         Sinc {info['sinc_taps']} taps, stride {info['sinc_stride']}; conv "
        f"strides {'*'.join(map(str, info['conv_strides']))}; cost {info['frontend_cost_vs_8khz']:.2f}x "
        "the 8 kHz preset's per second of audio"
    )
    print(f"params encoder    {info['params_encoder'] / 1e6:.2f} M")
    print(f"params student    {info['params_student'] / 1e6:.2f} M (encoder + decoder)")
    print(f"params teacher    {info['params_teacher'] / 1e6:.2f} M (EMA, no CNN / decoder)")
    print(
        f"frame rate        {info['frame_rate_hz']:g} Hz; receptive field {info['receptive_field_ms']:.2f} ms"
    )
    print(f"frames per clip   {info['frames_per_clip']}")
    frame_ms = 1000 / info["frame_rate_hz"]
    if frame_ms not in (5.0, 1.0):
        print(f"warning: {frame_ms:g} ms frames; the presets give 5 ms (or 1 ms, ultrasonic)")
    print(f"masked fraction   {info['masked_fraction']:.3f} (simulated)")
    print(f"audio per step    {info['audio_s_per_step']:g} s")


@command
def main(argv: list[str] | None = None) -> None:
    ap = parser("a2v info", __doc__)
    ap.add_argument("--config", help="a pretraining or fine-tuning config (sizes and rates)")
    ap.add_argument(
        "--job",
        choices=[*JOBS, *TOOLS],
        help="the job the config is for (default: its folder, configs/<job>/...)",
    )
    ap.add_argument(
        "--fields",
        action="store_true",
        help="list every config key of --job (default finetune) with its type, default and "
        "meaning: what --set KEY=VALUE takes",
    )
    ap.add_argument(
        "--sample-rate-hz",
        type=int,
        default=None,
        help="= --set model.sample_rate_hz=...: the rate preset, one of "
        + ", ".join(str(r) for r in RATE_PRESETS),
    )
    ap.add_argument("--set", dest="overrides", action="append", default=[], help=SET_HELP)
    ap.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = ap.parse_args(argv)
    if args.fields:
        print_fields(args.job or "finetune")
        return
    if not args.config:
        raise InputError("--config is required (or --fields to list a job's config keys)")
    kind = args.job or Path(args.config).resolve().parent.name
    if kind not in ("pretrain", "finetune"):
        raise InputError(
            f"--config {args.config}: not under configs/<job>/; say --job pretrain|finetune"
        )
    rate = [f"model.sample_rate_hz={args.sample_rate_hz}"] if args.sample_rate_hz else []
    job = load_config(JOBS[kind], args.config, rate + args.overrides)  # ConfigError: exit 2
    info = summarize(job)
    if args.json:
        print(json.dumps(info, indent=2))
        return
    print_summary(info)


if __name__ == "__main__":
    main()
