use clap::Parser;

fn main() -> std::process::ExitCode {
    usageflow::cli::run(usageflow::cli::Cli::parse())
}
