//! `alpy image build`: an appliance image from a TOML recipe.

use std::path::PathBuf;
use std::process::ExitCode;

/// What `alpy image` does.
#[derive(clap::Subcommand, Debug)]
pub(crate) enum ImageCommand {
    /// Build the image a recipe describes (only when something it is made
    /// of changed: the recipe, its files, a package's version) and print
    /// its output directory (`<cache>/NAME`: vmlinuz, and initrd.img,
    /// NAME.qcow2 or disk.raw by output kind).
    ///
    /// Example: `alpy image build examples/dnsbox/recipe.toml`.
    Build {
        /// The recipe (TOML; every key is in docs/IMAGES.md).
        recipe: PathBuf,
        /// Build nothing: exit 0 if the image is current, 3 if a build is due.
        #[arg(long)]
        check: bool,
    },
}

/// Runs an `alpy image` command; exit code 3 means `--check` found a build due.
pub(crate) fn run(what: ImageCommand) -> ExitCode {
    alpy::logging::init();
    let ImageCommand::Build { recipe, check } = what;
    let result = (|| {
        let recipe = alpy::image::Recipe::load(&recipe)?;
        let plan = alpy::image::Plan::new(&recipe, &alpy::settings::Settings::from_env())?;
        if check {
            return Ok(match plan.current() {
                Some(b) => {
                    eprintln!("Image {} is up to date ({})", recipe.name, b.hash);
                    println!("{}", b.dir.display());
                    ExitCode::SUCCESS
                }
                None => {
                    eprintln!(
                        "Image {} is not built or out of date (want {})",
                        recipe.name, plan.hash
                    );
                    ExitCode::from(3)
                }
            });
        }
        let built = plan.build()?;
        println!("{}", built.dir.display());
        Ok(ExitCode::SUCCESS)
    })();
    result.unwrap_or_else(|e: alpy::Error| {
        eprintln!("alpy image build: error: {e}");
        ExitCode::FAILURE
    })
}
