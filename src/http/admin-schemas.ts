import { Type, type Static } from '@sinclair/typebox';

const positiveInt = (description: string, max = 100_000, min = 1) => Type.Optional(Type.Integer({ minimum: min, maximum: max, description }));
/** Pixels: the training package takes 16 to 4096. */
const pixels = (description: string) => positiveInt(description, 1024, 16);
const positiveNumber = (description: string) => Type.Optional(Type.Number({ exclusiveMinimum: 0, description }));

export const RetrainBody = Type.Object(
  {
    recipe: Type.Optional(Type.Union([Type.Literal('auto'), Type.Literal('cpu'), Type.Literal('paper')], {
      description:
        "Named defaults for the options below (training/recipes.py). cpu: the whole network on a CPU in under 90 minutes " +
        '(96x144 crops, bf16, lr 2e-3 cosine, 40 epochs); paper: the paper\'s (lr 1e-4, 20 epochs; for a GPU and ImageNet weights). Default auto: paper on CUDA, cpu otherwise',
    })),
    mode: Type.Optional(Type.Union([Type.Literal('head'), Type.Literal('full')], {
      description: "full: the whole network (default); head: backbone frozen, features cached, only the head trains (minutes on a CPU)",
    })),
    labels: Type.Optional(Type.Union([Type.Literal('genres'), Type.Literal('single_genre')], {
      description: 'genres: a poster is a positive of every one of its genres (multi-label; default); single_genre: of its first only',
    })),
    init: Type.Optional(Type.Union([Type.Literal('active'), Type.Literal('random')], { description: 'Start from the active model (default; random when it has no checkpoint) or a random initialisation' })),
    arch: Type.Optional(Type.Union([Type.Literal('resnet50'), Type.Literal('resnet34'), Type.Literal('resnet18')], {
      description: 'With init random: the torchvision ResNet (default resnet50)',
    })),
    epochs: positiveInt("Epochs (default: the recipe's)", 1000),
    batch_size: positiveInt('Batch size (default 32)', 4096, 2),
    lr: positiveNumber("AdamW learning rate (default: the recipe's)"),
    proxy_lr_multiplier: positiveNumber("The proxies' learning rate as a multiple of lr"),
    weight_decay: Type.Optional(Type.Number({ minimum: 0, description: 'AdamW weight decay' })),
    warmup_epochs: Type.Optional(Type.Integer({ minimum: 0, maximum: 1000, description: 'Epochs with the backbone frozen first' })),
    schedule: Type.Optional(Type.Union([Type.Literal('constant'), Type.Literal('cosine')], { description: 'Learning-rate schedule' })),
    crop_scale: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 1, description: 'Smallest area fraction of the random crop' })),
    grad_clip: Type.Optional(Type.Number({ minimum: 0, description: 'Gradient clipping threshold; 0: off' })),
    margin: Type.Optional(Type.Number({ minimum: 0, description: 'Proxy-anchor margin (default 0.1)' })),
    alpha: positiveNumber('Proxy-anchor alpha (default 32)'),
    embedding_dim: positiveInt('Embedding size (default: the active model’s)', 4096),
    width: pixels('Model input width in pixels (default: the active model’s)'),
    height: pixels('Model input height in pixels (default: the active model’s)'),
    train_width: pixels("Training crop width (default: the recipe's, else the model's)"),
    train_height: pixels('Training crop height'),
    val_every: positiveInt("Validate every N epochs and after the last (default: the recipe's)", 1000),
    seed: Type.Optional(Type.Integer({ minimum: 0, description: 'Random seed' })),
    limit_batches: positiveInt('Stop each epoch after this many batches (for quick trials)'),
    devices: positiveInt(
      'Training processes on this machine: GPUs on CUDA (default: all), CPU processes on a CPU (default 1). More than one trains with DDP (NCCL on GPUs, gloo on CPUs), the loss over the global batch',
      1024,
    ),
    num_nodes: positiveInt("Machines training together (each started with the same command and torch.distributed's MASTER_ADDR, MASTER_PORT, NODE_RANK)", 1024),
    force: Type.Optional(Type.Boolean({ description: 'Activate even if not better than the active model on val' })),
  },
  { additionalProperties: false, $id: 'RetrainParams' },
);
export type RetrainBody = Static<typeof RetrainBody>;

export const JobBody = Type.Object(
  {
    id: Type.String(),
    kind: Type.String(),
    state: Type.String({ description: 'queued, preparing, training, evaluating, indexing, swapping, succeeded, failed, cancelled or rejected' }),
    params: Type.Record(Type.String(), Type.Unknown()),
    progress: Type.Union([Type.Record(Type.String(), Type.Unknown()), Type.Null()], {
      description: 'stage, epoch, epochs, step, steps, loss, img_per_s, eta_s, fraction (0..1), last_validation',
    }),
    metrics: Type.Union([Type.Record(Type.String(), Type.Unknown()), Type.Null()], { description: "The gate's figures: candidate vs active on val" }),
    model_version: Type.Union([Type.String(), Type.Null()]),
    error: Type.Union([Type.String(), Type.Null()]),
    log_tail: Type.Union([Type.String(), Type.Null()], { description: "The end of the training process's log" }),
    created_at: Type.String(),
    updated_at: Type.String(),
    finished_at: Type.Union([Type.String(), Type.Null()]),
  },
  { $id: 'Job' },
);

export const JobParams = Type.Object({ id: Type.String() });
export type JobParams = Static<typeof JobParams>;

export const ModelBody = Type.Object(
  {
    version: Type.String(),
    active: Type.Boolean(),
    created_at: Type.String(),
    dims: Type.Integer(),
    input: Type.Object({ width: Type.Integer(), height: Type.Integer() }),
    precision: Type.Union([Type.Literal('fp32'), Type.Literal('int8')], { description: 'The variant this server serves the version in (MARQUEE_PRECISION)' }),
    variants: Type.Array(Type.Union([Type.Literal('fp32'), Type.Literal('int8')]), { description: 'Every variant the version has' }),
    file_sha256: Type.String({ description: "The served variant's ONNX file" }),
    source: Type.Record(Type.String(), Type.Unknown(), { description: 'How the model was made (export or training run)' }),
    metrics: Type.Union([Type.Record(Type.String(), Type.Unknown()), Type.Null()]),
  },
  { $id: 'Model' },
);

export const VersionParams = Type.Object({ version: Type.String() });
export type VersionParams = Static<typeof VersionParams>;
