//! The distributed launch: an `accelerate` config for N GPUs (data parallel, DeepSpeed ZeRO
//! 2 or 3, or FSDP2) and the DeepSpeed JSON it points at. Batch sizes, accumulation,
//! clipping and precision in the DeepSpeed file are `auto`: the Trainer fills them from its
//! own arguments, so the two never disagree.

use super::{Plan, Precision, Sharding};
use serde_json::{json, Value};

/// The accelerate config's file name.
pub const ACCELERATE: &str = "accelerate.yaml";
/// The DeepSpeed config's file name.
pub const DEEPSPEED: &str = "deepspeed.json";

/// `accelerate.yaml` and, for ZeRO, `deepspeed.json`.
pub fn files(plan: &Plan) -> Vec<(String, String)> {
    let mut out = vec![(ACCELERATE.to_string(), accelerate_yaml(plan))];
    if let Sharding::Zero(stage) = plan.launch.sharding {
        let text = serde_json::to_string_pretty(&deepspeed(stage)).unwrap_or_default() + "\n";
        out.push((DEEPSPEED.to_string(), text));
    }
    out
}

/// The DeepSpeed config for ZeRO `stage` (2 or 3), every Trainer-owned value `auto`.
pub fn deepspeed(stage: u8) -> Value {
    let zero = if stage >= 3 {
        json!({
            "stage": 3,
            "overlap_comm": false,
            "contiguous_gradients": true,
            "sub_group_size": 1e9,
            "reduce_bucket_size": "auto",
            "stage3_prefetch_bucket_size": "auto",
            "stage3_param_persistence_threshold": "auto",
            "stage3_max_live_parameters": 1e9,
            "stage3_max_reuse_distance": 1e9,
            "stage3_gather_16bit_weights_on_model_save": true
        })
    } else {
        json!({
            "stage": 2,
            "allgather_partitions": true,
            "allgather_bucket_size": 5e8,
            "overlap_comm": false,
            "reduce_scatter": true,
            "reduce_bucket_size": 5e8,
            "contiguous_gradients": true,
            "round_robin_gradients": true
        })
    };
    json!({
        "train_batch_size": "auto",
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "zero_allow_untested_optimizer": true,
        "fp16": {
            "enabled": "auto",
            "loss_scale": 0,
            "loss_scale_window": 1000,
            "initial_scale_power": 16,
            "hysteresis": 2,
            "min_loss_scale": 1
        },
        "bf16": {"enabled": "auto"},
        "zero_optimization": zero
    })
}

/// The accelerate config (what `accelerate config` writes) for the plan's GPUs.
pub fn accelerate(plan: &Plan) -> Value {
    let mixed = match plan.precision() {
        Precision::Bf16 => "bf16",
        Precision::Fp16 => "fp16",
        Precision::Fp32 => "no",
    };
    let mut c = serde_json::Map::new();
    c.insert("compute_environment".into(), json!("LOCAL_MACHINE"));
    c.insert("debug".into(), json!(false));
    match plan.launch.sharding {
        Sharding::Zero(stage) => {
            // With a config file, accelerate takes precision and accumulation from it.
            let mut ds = serde_json::Map::new();
            ds.insert("deepspeed_config_file".into(), json!(DEEPSPEED));
            ds.insert("deepspeed_multinode_launcher".into(), json!("standard"));
            if stage >= 3 {
                ds.insert("zero3_init_flag".into(), json!(true));
            }
            c.insert("deepspeed_config".into(), Value::Object(ds));
            c.insert("distributed_type".into(), json!("DEEPSPEED"));
        }
        Sharding::Fsdp => {
            c.insert("distributed_type".into(), json!("FSDP"));
            c.insert("downcast_bf16".into(), json!("no"));
            let mut f = serde_json::Map::new();
            f.insert(
                "fsdp_activation_checkpointing".into(),
                json!(plan.fsdp_checkpointing()),
            );
            f.insert(
                "fsdp_auto_wrap_policy".into(),
                json!("TRANSFORMER_BASED_WRAP"),
            );
            f.insert(
                "fsdp_cpu_ram_efficient_loading".into(),
                json!(plan.quant_bits().is_none()),
            );
            f.insert("fsdp_offload_params".into(), json!(false));
            f.insert("fsdp_reshard_after_forward".into(), json!(true));
            f.insert("fsdp_state_dict_type".into(), json!("FULL_STATE_DICT"));
            if let Some(layer) = plan.decoder_layer() {
                f.insert("fsdp_transformer_layer_cls_to_wrap".into(), json!(layer));
            }
            f.insert("fsdp_version".into(), json!(2));
            c.insert("fsdp_config".into(), Value::Object(f));
            c.insert("mixed_precision".into(), json!(mixed));
        }
        Sharding::None => {
            c.insert(
                "distributed_type".into(),
                json!(if plan.launch.world() > 1 {
                    "MULTI_GPU"
                } else {
                    "NO"
                }),
            );
            c.insert("downcast_bf16".into(), json!("no"));
            c.insert("gpu_ids".into(), json!("all"));
            c.insert("mixed_precision".into(), json!(mixed));
        }
    }
    c.insert("machine_rank".into(), json!(0));
    c.insert("main_training_function".into(), json!("main"));
    c.insert("num_machines".into(), json!(plan.launch.nodes.max(1)));
    c.insert("num_processes".into(), json!(plan.launch.world()));
    c.insert("rdzv_backend".into(), json!("static"));
    c.insert("same_network".into(), json!(true));
    c.insert("tpu_env".into(), json!([]));
    c.insert("tpu_use_cluster".into(), json!(false));
    c.insert("tpu_use_sudo".into(), json!(false));
    c.insert("use_cpu".into(), json!(false));
    Value::Object(c)
}

fn accelerate_yaml(plan: &Plan) -> String {
    format!(
        "# accelerate config for {} GPU(s), written by `tunelab export-config`.\n{}",
        plan.launch.world(),
        super::yaml::to_string(&accelerate(plan))
    )
}

/// `accelerate launch`'s arguments for one node of several, read from the environment the
/// SLURM script sets (`NODE_RANK`, `MASTER_ADDR`, `MASTER_PORT`); `None` on one node.
pub fn multinode_args(plan: &Plan) -> Option<String> {
    (plan.launch.nodes > 1).then(|| {
        format!(
            "--num_machines {} --num_processes {} --machine_rank \"$NODE_RANK\" --main_process_ip \"$MASTER_ADDR\" --main_process_port \"$MASTER_PORT\"",
            plan.launch.nodes,
            plan.launch.world()
        )
    })
}
