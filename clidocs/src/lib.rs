//! Man pages and shell completions of the hvcluster programs, written from the same clap
//! definitions that parse their command lines, so they cannot drift from the programs.
//! The packaging script asks each program for them by starting it with
//! `HVCLUSTER_WRITE_DOCS=DIR` in its environment.

use std::path::Path;
use std::process::ExitCode;

/// The environment variable that asks a program to write its documentation and exit.
pub const WRITE_DOCS: &str = "HVCLUSTER_WRITE_DOCS";

/// The manual section of every hvcluster program: system administration.
pub const SECTION: &str = "8";

/// When [`WRITE_DOCS`] names a directory, writes there the man pages and completions of
/// the command `command()` builds ([`write`]) and returns the exit status; otherwise
/// returns `None` and the program runs as usual.
pub fn write_if_asked(command: impl FnOnce() -> clap::Command) -> Option<ExitCode> {
    let dir = std::env::var_os(WRITE_DOCS)?;
    let cmd = command();
    let name = cmd.get_name().to_string();
    Some(match write(cmd, Path::new(&dir)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "{name}: cannot write the man pages and completions to {}: {e}",
                Path::new(&dir).display()
            );
            ExitCode::from(1)
        }
    })
}

/// Writes `DIR/man/NAME.8` (and `NAME-SUB.8` for every visible subcommand, at every
/// depth), `DIR/completions/bash/NAME`, `DIR/completions/zsh/_NAME` and
/// `DIR/completions/fish/NAME.fish`.
pub fn write(cmd: clap::Command, dir: &Path) -> std::io::Result<()> {
    let man = dir.join("man");
    std::fs::create_dir_all(&man)?;
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    write_pages(&cmd, &man)?;
    let name = cmd.get_name().to_string();
    for (shell, file) in [
        (clap_complete::Shell::Bash, name.clone()),
        (clap_complete::Shell::Zsh, format!("_{name}")),
        (clap_complete::Shell::Fish, format!("{name}.fish")),
    ] {
        let out = dir.join("completions").join(shell.to_string());
        std::fs::create_dir_all(&out)?;
        let mut file = std::fs::File::create(out.join(file))?;
        clap_complete::generate(shell, &mut cmd, &name, &mut file);
    }
    Ok(())
}

fn write_pages(cmd: &clap::Command, man: &Path) -> std::io::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, man)?;
    }
    let page = clap_mangen::Man::new(cmd.clone())
        .section(SECTION)
        .manual("hvcluster");
    let mut file = std::fs::File::create(man.join(page.get_filename()))?;
    page.render(&mut file)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A program with a subcommand gets a page for each, and completions for the three
    /// shells that know its subcommand and option.
    #[test]
    fn pages_and_completions_cover_every_subcommand() {
        let cmd = clap::Command::new("hvdemo")
            .about("Demo program")
            .subcommand(
                clap::Command::new("status").about("Show the state").arg(
                    clap::Arg::new("json")
                        .long("json")
                        .action(clap::ArgAction::SetTrue),
                ),
            )
            .subcommand(clap::Command::new("secret").hide(true));
        let dir = tempfile::tempdir().unwrap();
        write(cmd, dir.path()).unwrap();
        let page = std::fs::read_to_string(dir.path().join("man/hvdemo.8")).unwrap();
        assert!(page.contains(".TH hvdemo 8"), "{page}");
        assert!(page.contains("Demo program"), "{page}");
        let sub = std::fs::read_to_string(dir.path().join("man/hvdemo-status.8")).unwrap();
        assert!(sub.contains("\\-\\-json"), "{sub}");
        assert!(!dir.path().join("man/hvdemo-secret.8").exists());
        for file in ["bash/hvdemo", "zsh/_hvdemo", "fish/hvdemo.fish"] {
            let text = std::fs::read_to_string(dir.path().join("completions").join(file)).unwrap();
            assert!(
                text.contains("status") && text.contains("json"),
                "{file}: {text}"
            );
        }
    }
}
