//! `alpy gc` and `alpy graph`.

pub(crate) fn gc(json: bool) -> alpy::Result<()> {
    let docker = alpy::net::Docker::connect()?;
    let reaped = alpy::internal::reap::reap(&docker)?;
    if json {
        let v = serde_json::json!({
            "containers": reaped.containers,
            "dirs": reaped.dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>(),
        });
        println!("{v}");
        return Ok(());
    }
    for c in &reaped.containers {
        println!("removed container {c}");
    }
    for d in &reaped.dirs {
        println!("removed directory {}", d.display());
    }
    println!(
        "alpy gc: removed {} container(s) and {} directory(ies) of dead runs",
        reaped.containers.len(),
        reaped.dirs.len()
    );
    Ok(())
}

pub(crate) fn graph(
    file: &std::path::Path,
    output: Option<&std::path::Path>,
    svg: Option<&std::path::Path>,
) -> alpy::Result<()> {
    let drawing = alpy::Topology::load(file)?.drawing();
    let dot = drawing.dot();
    match output {
        Some(p) => std::fs::write(p, &dot)
            .map_err(|e| alpy::Error::io(format!("write {}", p.display()), e))?,
        None => print!("{dot}"),
    }
    if let Some(svg) = svg {
        std::fs::write(svg, drawing.svg())
            .map_err(|e| alpy::Error::io(format!("write {}", svg.display()), e))?;
    }
    Ok(())
}
