//! `sealbox`: the operator's command.
fn main() {
    eprintln!("sealbox: no commands are built yet");
    std::process::exit(2);
}
