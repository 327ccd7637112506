#[multipool::test(worker_threads = 4)]
async fn paused() {}

fn main() {}
