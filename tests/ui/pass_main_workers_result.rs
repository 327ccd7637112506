use std::error::Error;

#[multipool::main(workers = 2)]
async fn main() -> Result<(), Box<dyn Error>> {
    let n: u32 = "2".parse()?;
    let task = multipool::spawn(async move { n * 21 });
    assert_eq!(task.await?, 42);
    Ok(())
}
