//! The `kage` command line.

use std::process::ExitCode;

const HELP: &str = "\
kage: an HTTP/1 shadow proxy and content-aware TCP router

USAGE:
    kage [--help | --version]

STATUS:
    This build has the HTTP/1 layer (the strict parser, chunked codec and head
    rewrite, see the `kage` library). The proxy itself is not built yet; the
    interface it will have:

    kage --listen ADDR --master [NAME=]HOST:PORT [--shadow [NAME=]HOST:PORT]...
         [--backend-timeout DUR] [--client-timeout DUR] [--shadow-timeout DUR]
         [--shadow-methods LIST|all] [--sample PERCENT] [--max-connections N]

    Every request goes to the master, whose response goes back to the client;
    selected requests are also sent to the shadows, whose responses are
    captured and compared, never sent to the client.

OPTIONS:
    -h, --help       Print this help and exit
    -V, --version    Print the version and exit

ENVIRONMENT:
    RUST_LOG         Log filter (env_logger syntax), e.g. RUST_LOG=kage=debug
";

fn main() -> ExitCode {
    env_logger::init();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("kage: {message}");
            eprintln!("Try 'kage --help'.");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), String> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_env();
    let mut asked = false;
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Short('h') | Long("help") => {
                print!("{HELP}");
                asked = true;
            }
            Short('V') | Long("version") => {
                println!("kage {}", env!("CARGO_PKG_VERSION"));
                asked = true;
            }
            other => return Err(other.unexpected().to_string()),
        }
    }
    if asked {
        Ok(())
    } else {
        Err("the proxy is not built yet in this version; only --help and --version work".into())
    }
}
