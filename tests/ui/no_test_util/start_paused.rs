// Compiled without multipool's `test-util` feature.
#[multipool::main(start_paused = true)]
async fn main() {}
