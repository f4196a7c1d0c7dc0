//! Names of evaluation metrics: which way is better.

/// Whether a higher value of `metric` (`dev_matched.accuracy`, `held_out.loss`, `psnr`) is
/// better. As Hugging Face's Trainer: loss-like names (a loss, an error, a distance) are
/// better lower, everything else higher.
pub fn greater_is_better(metric: &str) -> bool {
    let leaf = metric.rsplit('.').next().unwrap_or(metric);
    const LOWER: &[&str] = &[
        "loss",
        "final_loss",
        "l1",
        "mse",
        "mae",
        "rmse",
        "kl",
        "error",
        "perplexity",
        "ppl",
        "wer",
        "cer",
        "fid",
        "lpips",
    ];
    !(LOWER.contains(&leaf) || leaf.ends_with("_loss") || leaf.ends_with("_error"))
}

#[cfg(test)]
mod tests {
    use super::greater_is_better;

    #[test]
    fn loss_like_names_are_better_lower() {
        assert!(!greater_is_better("held_out.loss"));
        assert!(!greater_is_better("held_out.l1"));
        assert!(!greater_is_better("recon_loss"));
        assert!(greater_is_better("dev_matched.accuracy"));
        assert!(greater_is_better("held_out.psnr"));
        assert!(greater_is_better("macro_f1"));
    }
}
