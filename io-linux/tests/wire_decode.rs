//! `minuteman wire decode` on sealed frames: the MAC is checked with a key file, reported as
//! unchecked without one, and a frame under another key is refused.

use minuteman_core::auth::{ClusterKey, FrameAuth};
use minuteman_core::id::NodeId;
use minuteman_core::wire::{self, Envelope, Limits, Message};
use std::process::Command;

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_minuteman"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn sealed_frames_decode_with_and_without_the_key() {
    let dir = std::env::temp_dir().join(format!("mm-wire-decode-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (key, other) = (dir.join("key"), dir.join("other"));
    std::fs::write(&key, format!("{}\n", "a1".repeat(32))).unwrap();
    std::fs::write(&other, "b2".repeat(32)).unwrap();
    let auth =
        FrameAuth::key(ClusterKey::from_file_contents(&std::fs::read(&key).unwrap()).unwrap());
    let envelope = Envelope {
        from: NodeId::new("10.0.0.7:61420".parse().unwrap(), 42),
        msg: Message::Join,
    };
    let frame = dir.join("frame");
    std::fs::write(
        &frame,
        wire::encode_sealed(&envelope, &Limits::default(), &auth).unwrap(),
    )
    .unwrap();
    let f = frame.to_str().unwrap();

    let (code, out, _) = run(&[
        "wire",
        "decode",
        f,
        "--cluster-key-file",
        key.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("from 10.0.0.7:61420") && out.contains("MAC verified") && out.contains("Join"),
        "{out}"
    );

    let (code, out, _) = run(&["wire", "decode", f]);
    assert_eq!(code, Some(0));
    assert!(out.contains("MAC not checked"), "{out}");

    let (code, _, err) = run(&[
        "wire",
        "decode",
        f,
        "--cluster-key-file",
        other.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1));
    assert!(err.contains("MAC"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
