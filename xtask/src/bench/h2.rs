//! Scenario 4: HTTP/2 (h2c, prior knowledge) multiplexed requests, Ambit vs direct.

use anyhow::Result;

use super::loadgen::h2load;
use super::report::{Better, Figure, Report};
use super::world::World;
use super::Plan;

pub fn run(world: &World, plan: &Plan, report: &mut Report) -> Result<()> {
    let ambit_url = format!("http://{}/", world.service("echo-h2", 80)?);
    let direct_url = format!("http://{}/", world.direct_http());
    let mut f = Figure::new("4 h2c multiplexed (4 conns × 32 streams)", "throughput", "req/s", Better::Higher);
    h2load(world, &ambit_url, plan.requests / 10, 4, &["-m", "32"])?;
    for _ in 0..plan.reps {
        f.direct.push(h2load(world, &direct_url, plan.requests, 4, &["-m", "32"])?.requests_per_s);
        let r = h2load(world, &ambit_url, plan.requests, 4, &["-m", "32"])?;
        if r.failed > 0 {
            anyhow::bail!("h2c through Ambit: {} requests failed", r.failed);
        }
        f.ambit.push(r.requests_per_s);
    }
    report.push(f.note("h2load -c 4 -m 32; HAProxy not configured for h2c, so no HAProxy column"));
    Ok(())
}
