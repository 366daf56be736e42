//! Scenario 5: TCP passthrough of a large transfer through the echo's TCP port.

use anyhow::Result;

use super::loadgen::ambit_load;
use super::report::{Better, Figure, Report};
use super::world::World;
use super::Plan;

pub fn run(world: &World, plan: &Plan, report: &mut Report) -> Result<()> {
    let ambit = world.service("echo-tcp", 9000)?.to_string();
    let direct = format!("{}:9090", world.echo_a.ipv4);
    let bytes = plan.tcp_bytes.to_string();
    let mut f = Figure::new("5 TCP passthrough", "echo throughput (each way)", "Gbit/s", Better::Higher);
    for _ in 0..plan.reps {
        for (addr, out) in [(&direct, &mut f.direct), (&ambit, &mut f.ambit)] {
            let v = ambit_load(world, &["tcp", "--addr", addr, "--bytes", &bytes])?;
            out.push(v["gbit_per_s"].as_f64().unwrap_or(f64::NAN));
        }
    }
    report.push(f.note(format!("{} MiB written and echoed back over one connection", plan.tcp_bytes >> 20)));
    Ok(())
}
