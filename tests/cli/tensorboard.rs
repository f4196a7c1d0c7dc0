//! Event files that the real TensorBoard reads: written by runner, read back with the
//! `tensorboard` Python package's EventAccumulator (installed by .ci/run).

use std::process::Command;

use runner::train::tensorboard::EventWriter;

#[test]
fn tensorboard_reads_our_scalars() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = EventWriter::create(dir.path()).unwrap();
    for step in 0..50u64 {
        w.scalar("train/loss", step, 1.0 / (step as f32 + 1.0))
            .unwrap();
        if step % 10 == 0 {
            w.scalar("eval/accuracy", step, step as f32 / 100.0)
                .unwrap();
        }
    }
    w.flush().unwrap();
    // A second file in the same directory, as a resumed run writes.
    let mut resumed = EventWriter::create(dir.path()).unwrap();
    resumed.scalar("train/loss", 50, 0.01).unwrap();
    resumed.flush().unwrap();

    let script = r#"
import sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
acc = EventAccumulator(sys.argv[1])
acc.Reload()
for tag in sorted(acc.Tags()["scalars"]):
    for e in acc.Scalars(tag):
        print(tag, e.step, repr(e.value))
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(dir.path())
        .output()
        .expect("python3 runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the TensorBoard reader failed (install it into the python3 on PATH: `python3 -m pip install tensorboard==2.21.0`; `just setup-test` puts it in .venv-tch):\n{stderr}"
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("eval/accuracy "))
            .count(),
        5,
        "{stdout}"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("train/loss "))
            .count(),
        51,
        "{stdout}"
    );
    assert!(lines.contains(&"train/loss 3 0.25"), "{stdout}");
    assert!(
        lines.contains(&"eval/accuracy 40 0.4000000059604645"),
        "{stdout}"
    );
    assert!(
        lines.contains(&"train/loss 50 0.009999999776482582"),
        "{stdout}"
    );
}
