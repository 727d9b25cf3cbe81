fn main() -> std::process::ExitCode {
    iw_lab::run()
}
