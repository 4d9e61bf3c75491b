"""Typed, frozen configuration for every component.

Each field carries a one-line docstring: `alignkit <command> --help` shows it. Defaults follow common
practice in the papers and peers (AdamW, cosine schedule with warm-up, clip 1.0); the demo and
examples override what a tiny model needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from alignkit.algos.losses.reward import BTForm


@dataclass(frozen=True)
class LoraConfig:
    """LoRA adapters through peft (rank 0 trains the full model)."""

    rank: int = 0
    """LoRA rank; 0 disables LoRA and trains every weight."""
    alpha: float = 16.0
    """LoRA scaling numerator (the update is scaled by alpha / rank)."""
    dropout: float = 0.0
    """Dropout on the LoRA input."""
    target_modules: list[str] = field(default_factory=lambda: ["all-linear"])
    """Layers that get adapters: all-linear (every linear layer of the decoder blocks and the MoE experts;
    not the LM head or a score head), or names a layer's name ends with, e.g. q_proj v_proj."""


@dataclass(frozen=True)
class ModelConfig:
    """The model to train: a local Hugging Face folder."""

    path: str = ""
    """Local Hugging Face model folder (config.json + weights); its tokenizer is loaded from it too."""
    tokenizer_path: str = ""
    """Tokenizer folder when it differs from model.path."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Parameter dtype: float32, bfloat16 or float16."""
    attn_implementation: str = "sdpa"
    """Attention kernel: sdpa, eager, flex_attention or flash_attention_2; a model without it runs sdpa, else eager (logged)."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass to save memory."""
    dropout: bool = False
    """Keep the model's dropout while training. Off by default: the losses compare the trained model with
    the sampler and the reference, which run without dropout (TRL and OpenRLHF switch it off too)."""
    logprob_chunk_tokens: int = 256
    """Compute log-probs and entropies this many tokens at a time, recomputing each chunk's logits in the backward,
    so only a (chunk x vocab) block of logits exists (0: all (tokens x vocab) logits at once, in fp32)."""
    lora: LoraConfig = field(default_factory=LoraConfig)
    """LoRA settings."""


@dataclass(frozen=True)
class DataConfig:
    """Where the training data comes from and how it becomes tokens."""

    train_files: list[str] = field(default_factory=list)
    """One or more files (jsonl, json, parquet, csv) or `datasets` folders (folder:split picks a split)."""
    train_weights: list[float] | None = None
    """Mixing proportions, one per train file; None concatenates all records."""
    eval_files: list[str] = field(default_factory=list)
    """Held-out files for eval loss; empty uses eval_fraction of the training records."""
    eval_fraction: float = 0.0
    """Fraction of training records held out for eval when eval_files is empty."""
    max_samples: int | None = None
    """Use at most this many training records (after mixing)."""
    max_length: int = 1024
    """Longest sample in tokens; longer ones are cut from the right (end of the response) and counted."""
    packing: bool = True
    """Pack several samples into one row (no padding; attention never crosses samples)."""
    share_prompt: bool = True
    """Put a shared prompt through the model once: a preference pair's, for both responses, and a chat
    record's that trains as several rows (data/chat.py). With packing; not with flash-attention, which
    cannot express it. Same log-probs, fewer tokens."""
    chat_template: bool = False
    """Render plain prompt/response records through the tokenizer's chat template (chat lists always are)."""
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra variables for the chat template wherever one is rendered, e.g. '{"enable_thinking": false}'."""
    tools_key: str = "tools"
    """Field holding a record's tool schemas (a list of objects), passed to the chat template as `tools`."""
    prompt_key: str = "prompt"
    """Field holding the prompt (text or a chat list)."""
    response_key: str = "response"
    """Field holding the SFT response."""
    messages_key: str = "messages"
    """Field holding a chat list [{role, content}, ...]; the loss covers every assistant turn."""
    chosen_key: str = "chosen"
    """Field holding the preferred response of a pair."""
    rejected_key: str = "rejected"
    """Field holding the dispreferred response of a pair."""
    margin_key: str = "margin"
    """Optional field with a numeric preference margin (reward models)."""
    completion_key: str = "completion"
    """Field holding the completion of an unpaired (KTO) record."""
    label_key: str = "label"
    """Field holding the boolean desirability of an unpaired (KTO) record."""


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation."""

    max_steps: int = 0
    """Optimizer steps; 0 means as many as `epochs` passes over the data take."""
    epochs: int = 1
    """Passes over the training data when max_steps is 0."""
    batch_size: int = 16
    """Per optimizer step: samples (sft), pairs (rm, dpo), records (kto), prompts (rl: each sampled n times)."""
    micro_batch_size: int = 4
    """Samples per forward/backward; batch_size / micro_batch_size steps of gradient accumulation."""
    micro_batch_tokens: int = 0
    """Fill each forward/backward up to N tokens instead (wins over micro_batch_size; 0: off): samples
    grouped first-fit-decreasing by length within the step, a longer sample alone (README: Training)."""
    lr: float = 2e-5
    """Peak learning rate (AdamW)."""
    min_lr_ratio: float = 0.1
    """The cosine schedule decays to lr * min_lr_ratio."""
    warmup_ratio: float = 0.03
    """Fraction of steps spent warming the learning rate up linearly from 0."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    adam_betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    """AdamW betas."""
    adam_eps: float = 1e-8
    """AdamW epsilon."""
    max_grad_norm: float = 1.0
    """Clip the global gradient norm to this (0 disables)."""
    eval_steps: int = 0
    """Evaluate every N steps (and at the end); 0 evaluates only at the end when there is eval data (rl: --eval.steps)."""
    device: str = "auto"
    """cpu, cuda, cuda:N, or auto (cuda when available)."""


@dataclass(frozen=True)
class CheckpointConfig:
    """Checkpoints (exact resume) and the final Hugging Face export."""

    save_steps: int = 0
    """Save a checkpoint every N steps (0: only the final export)."""
    keep: int = 2
    """Keep the newest N checkpoints; older ones are deleted."""


@dataclass(frozen=True)
class LoggingConfig:
    """Metrics sinks and the progress bar."""

    log_steps: int = 1
    """Write a metrics line every N steps."""
    tensorboard: bool = False
    """Also write TensorBoard events to <output_dir>/tensorboard."""
    wandb: bool = False
    """Also log to Weights & Biases (pip install alignkit[wandb])."""
    wandb_project: str = "alignkit"
    """Weights & Biases project."""
    wandb_mode: Literal["offline", "online", "disabled"] = "offline"
    """Weights & Biases mode: offline, online or disabled."""
    progress: bool = True
    """Show a progress bar on a terminal."""


@dataclass(frozen=True)
class RewardModelOptions:
    """Reward-model objective."""

    loss: BTForm = "sigmoid"
    """Bradley-Terry form: sigmoid (-log sigmoid(r_c - r_r - m)) or logexp (log(1 + exp(r_r - r_c + m)))."""
    use_margin: bool = False
    """Subtract each pair's margin field inside the loss (Llama 2 reward model)."""
    normalize: bool = True
    """Save reward mean/std over the training responses with the model, for normalised scoring."""


SHARDED_BACKENDS = ("fsdp2", "deepspeed")


@dataclass(frozen=True)
class BackendConfig:
    """How a trained model is sharded across its workers and stepped."""

    backend: Literal["torch", "fsdp2", "deepspeed"] = "torch"
    """Training backend: torch (one process), fsdp2 (fully_shard over the role's workers), deepspeed (ZeRO; optional extra)."""
    num_workers: int = 1
    """Data-parallel workers of the role (processes; Ray actors with --executor ray)."""
    zero_stage: int = 2
    """DeepSpeed ZeRO stage: 1, 2 or 3."""
    offload: bool = False
    """Offload optimizer states (and, for ZeRO-3 / FSDP2, parameters) to CPU memory."""

    @property
    def sharded(self) -> bool:
        """Whether the backend shards the model over a process group of its workers (fsdp2, deepspeed),
        rather than training one copy in one process (torch)."""
        return self.backend in SHARDED_BACKENDS


@dataclass(frozen=True)
class RayConfig:
    """The Ray executor: where roles run and how long a remote call may take."""

    address: str = ""
    """Ray cluster to join ('auto' for the running one); empty starts a local Ray instance."""
    placement: Literal["colocated", "separate"] = "colocated"
    """colocated: roles share bundles and take turns; separate: each role gets its own bundles."""
    bundles: dict[str, list[int]] = field(default_factory=dict)
    """Explicit role -> bundle indices mapping (e.g. from `alignkit plan --output`); overrides placement."""
    plan: str = ""
    """A plan file written by `alignkit plan --output`: its roles' bundles are the role -> bundle mapping; overrides placement."""
    cpus_per_worker: float = 1.0
    """CPUs reserved for each worker actor."""
    gpus_per_worker: float = 0.0
    """GPUs reserved for each worker actor (a fraction lets colocated roles share a GPU)."""
    call_timeout_s: float = 600.0
    """Longest wait for one remote call; the error names the role, worker and method."""


@dataclass(frozen=True)
class RunConfig:
    """Fields every training command shares."""

    model: ModelConfig = field(default_factory=ModelConfig)
    """The model."""
    data: DataConfig = field(default_factory=DataConfig)
    """The data."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Optimisation."""
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    """Checkpoints."""
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    """Logging."""
    output_dir: str = "runs/run"
    """Run directory: config.yaml, metrics.jsonl, checkpoints/, final/."""
    seed: int = 42
    """Seed for data order, initialisation and sampling."""
    resume: str = ""
    """Resume: 'latest' (or a bare --resume) takes the newest checkpoint in output_dir; a path takes that one."""
    resume_allow: str = ""
    """Fields a resume may change from the checkpoint's config, comma-separated (e.g. lr,max_steps); others are refused."""
    policy: BackendConfig = field(default_factory=BackendConfig)
    """Training backend of the trained model (the policy in RL)."""
    executor: Literal["local", "ray"] = "local"
    """Where roles run: local (one process) or ray (Ray actor groups)."""
    ray: RayConfig = field(default_factory=RayConfig)
    """Ray executor settings (--executor ray)."""


@dataclass(frozen=True)
class SFTConfig(RunConfig):
    """Supervised fine-tuning: next-token loss on responses only."""

    output_dir: str = "runs/sft"
    """Run directory: config.yaml, metrics.jsonl, checkpoints/, final/."""


@dataclass(frozen=True)
class RMConfig(RunConfig):
    """Reward model: Bradley-Terry loss on preference pairs, scalar head at the last token."""

    output_dir: str = "runs/rm"
    """Run directory: config.yaml, metrics.jsonl, checkpoints/, final/."""
    rm: RewardModelOptions = field(default_factory=RewardModelOptions)
    """Reward-model objective."""


@dataclass(frozen=True)
class RefConfig:
    """The frozen reference model of DPO-style and KTO training."""

    path: str = ""
    """Reference model folder; empty uses a frozen copy of the starting policy (with LoRA: the base
    model with the adapter disabled, no second copy)."""
    precompute: bool = False
    """Compute reference log-probs once in a first pass and cache them, so training holds one model."""


@dataclass(frozen=True)
class DPOOptions:
    """Preference-loss hyper-parameters."""

    beta: float | None = None
    """Inverse temperature; default per loss: 0.1 (dpo, cdpo, ipo, rpo), 2.0 (simpo), unused by orpo."""
    label_smoothing: float = 0.1
    """cDPO: the assumed probability that a preference label is flipped (--loss cdpo only)."""
    simpo_gamma: float = 0.5
    """SimPO target reward margin gamma."""
    orpo_lambda: float = 0.1
    """ORPO weight of the odds-ratio term (its NLL term has weight 1)."""
    rpo_alpha: float = 1.0
    """RPO weight of the NLL term on the chosen response (--loss rpo)."""
    nll_weight: float = 0.0
    """Add the chosen-response NLL term with this weight to any loss."""


@dataclass(frozen=True)
class DPOConfig(RunConfig):
    """Preference optimisation on pairs: DPO, cDPO, IPO, SimPO, ORPO, RPO."""

    output_dir: str = "runs/dpo"
    """Run directory: config.yaml, metrics.jsonl, checkpoints/, final/."""
    loss: Literal["dpo", "cdpo", "rpo", "ipo", "simpo", "orpo"] = "dpo"
    """dpo, cdpo (label smoothing), ipo, simpo (reference-free), orpo (reference-free), rpo (dpo + NLL)."""
    dpo: DPOOptions = field(default_factory=DPOOptions)
    """Loss hyper-parameters."""
    ref: RefConfig = field(default_factory=RefConfig)
    """Reference model."""


@dataclass(frozen=True)
class KTOOptions:
    """KTO hyper-parameters (Ethayarajh et al. 2024)."""

    beta: float = 0.1
    """Inverse temperature of the implicit reward."""
    desirable_weight: float = 1.0
    """lambda_D, the weight of desirable samples."""
    undesirable_weight: float = 1.0
    """lambda_U, the weight of undesirable samples."""


@dataclass(frozen=True)
class KTOConfig(RunConfig):
    """KTO on unpaired data: prompt, completion, boolean label."""

    output_dir: str = "runs/kto"
    """Run directory: config.yaml, metrics.jsonl, checkpoints/, final/."""
    kto: KTOOptions = field(default_factory=KTOOptions)
    """KTO hyper-parameters."""
    ref: RefConfig = field(default_factory=RefConfig)
    """Reference model."""


@dataclass(frozen=True)
class TinyModelConfig:
    """Build a tiny random model (Llama, or another architecture with --arch) and a locally trained
    tokenizer (with a chat template)."""

    output: str = "runs/tiny"
    """Folder to write the Hugging Face model and tokenizer to."""
    arch: str = "llama"
    """Architecture: llama, llama_untied, llama3 (no pad token, list of EOS ids), qwen2, qwen3, qwen3_moe,
    mistral, mixtral, gemma2, gemma3, phi3, olmo2, gpt_oss, gpt2, gpt_neox."""
    hidden: int = 128
    """Hidden size."""
    layers: int = 2
    """Transformer layers."""
    heads: int = 4
    """Attention heads."""
    kv_heads: int = 2
    """Key/value heads (grouped-query attention when fewer than heads)."""
    intermediate: int = 0
    """MLP size; 0 picks 8/3 * hidden rounded up to a multiple of 32, the Llama ratio."""
    vocab: int = 512
    """Tokenizer vocabulary size (byte-level BPE, digits split one per token)."""
    max_position: int = 2048
    """Longest sequence the model accepts."""
    window: int = 8
    """Sliding-window size of the architectures that have one (small, so that short sequences exceed it)."""
    model_vocab: int = 0
    """Rows of the model's embedding; 0 uses the tokenizer's size. Larger pads it, as real models do
    (Qwen2: 151936 rows for 151665 tokens), e.g. to measure a large vocabulary's cost."""
    seed: int = 0
    """Seed for the weights and the tokenizer corpus."""


@dataclass(frozen=True)
class SynthConfig:
    """Write a synthetic verifiable task as JSON lines."""

    task: Literal["arithmetic", "sort", "reverse"] = "arithmetic"
    """arithmetic (a+b=), sort (sort digits) or reverse (reverse letters)."""
    kind: Literal["sft", "prompt", "pair", "unpaired"] = "sft"
    """sft (prompt, response), prompt (prompt, label), pair (prompt, chosen, rejected) or unpaired (prompt, completion, label)."""
    n: int = 1000
    """Number of records."""
    output: str = "data/synth.jsonl"
    """Output .jsonl file."""
    seed: int = 0
    """Seed; the same seed writes the same file."""
