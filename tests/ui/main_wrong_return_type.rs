#[multipool::main]
async fn main() -> Result<(), String> {
    let _ = 1;
}
