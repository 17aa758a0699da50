//! `habctl completion bash|zsh|fish`: a script each shell loads; bash's is
//! loaded in a real bash and asked to complete.

use std::process::Command;

fn completion(shell: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_habctl"))
        .args(["completion", shell])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn bash_completes_habctls_commands_and_their_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("habctl.bash");
    std::fs::write(&script, completion("bash")).unwrap();
    let complete = |words: &str| {
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source {}; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); \
                 _habctl habctl \"${{COMP_WORDS[-1]}}\" \"${{COMP_WORDS[-2]}}\"; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
                script.display()
            ))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let top = complete("habctl ro");
    assert!(top.lines().any(|l| l == "rollout"), "{top}");
    let sub = complete("habctl rollout ''");
    for action in ["status", "pause", "resume", "undo"] {
        assert!(sub.lines().any(|l| l == action), "{action}: {sub}");
    }
    let shells = complete("habctl completion ''");
    for s in ["bash", "zsh", "fish"] {
        assert!(shells.lines().any(|l| l == s), "{shells}");
    }
}

#[test]
fn zsh_and_fish_get_their_own_scripts() {
    let zsh = completion("zsh");
    assert!(zsh.starts_with("#compdef habctl"), "{zsh}");
    let fish = completion("fish");
    assert!(fish.contains("complete -c habctl"), "{fish}");
    for script in [&zsh, &fish] {
        assert!(script.contains("rollout") && script.contains("promote"));
    }
}

#[test]
fn an_unknown_shell_is_refused_with_the_ones_known() {
    let out = Command::new(env!("CARGO_BIN_EXE_habctl"))
        .args(["completion", "tcsh"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("possible values") && err.contains("fish"),
        "{err}"
    );
}
