fn main() {
    std::process::exit(orchestrator::main_with_args(std::env::args_os().collect()));
}
