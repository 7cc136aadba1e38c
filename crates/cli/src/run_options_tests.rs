use super::*;
use agora_scheduler::proto::{AgentId, resource::AllocationInfo};
use agora_scheduler::scalar_resource;
use clap::Parser;

#[derive(clap::Parser, Debug)]
struct Cli {
    #[command(flatten)]
    args: RunArgs,
}

fn parse(extra: &[&str]) -> Result<RunArgs, clap::Error> {
    let mut argv = vec!["run", "--master", "m:1", "--name", "n", "--command", "c"];
    argv.extend_from_slice(extra);
    Cli::try_parse_from(argv).map(|cli| cli.args)
}

#[test]
fn parses_flags_defaults_and_aliases() {
    let args = parse(&[]).expect("valid flags");
    assert_eq!(args.instances, 1);
    assert_eq!(args.cpus, 0.1);
    assert_eq!(args.mem, 32.0);
    assert_eq!(args.disk, None);
    assert_eq!(args.ports, 0);
    assert!(args.uris.is_empty() && args.env.is_empty());
    assert_eq!(args.role, "*");
    assert_eq!(args.timeout, 30);
    assert_eq!(args.kill_after, None);
    assert_eq!(args.health_check, None);
    assert_eq!(args.health_failures, None);
    args.validate().expect("valid");

    let args = parse(&["--instances", "3", "--kill_after", "2"]).expect("valid flags");
    assert_eq!(args.instances, 3);
    assert_eq!(args.kill_after, Some(2));

    assert!(parse(&["--instances", "0"]).is_err());
    assert!(Cli::try_parse_from(["run", "--name", "n", "--command", "c"]).is_err());
}

#[test]
fn parses_the_task_flags() {
    let args = parse(&[
        "--uri",
        "http://h/a.tar.gz",
        "--uri",
        "http://h/tool;executable;extract=false;output_file=t",
        "--env",
        "A=1",
        "--env",
        "B=x=y",
        "--ports",
        "2",
        "--disk",
        "64",
        "--user",
        "nobody",
        "--health-check",
        "http:PORT1/ping",
        "--health-delay",
        "0.5",
        "--health_interval",
        "1",
        "--health-timeout",
        "2",
        "--health-grace",
        "3",
        "--health-failures",
        "4",
    ])
    .expect("valid flags");
    args.validate().expect("valid");
    assert_eq!(args.uris.len(), 2);
    assert_eq!(args.uris[1].executable, Some(true));
    assert_eq!(
        args.env,
        vec![("A".into(), "1".into()), ("B".into(), "x=y".into())]
    );
    assert_eq!((args.ports, args.disk), (2, Some(64.0)));
    assert_eq!(
        args.health_check,
        Some(HealthCheckSpec::Http {
            port: PortRef::Allocated(1),
            path: "/ping".into()
        })
    );
    assert_eq!(
        (
            args.health_delay,
            args.health_interval,
            args.health_timeout,
            args.health_grace,
            args.health_failures
        ),
        (Some(0.5), Some(1.0), Some(2.0), Some(3.0), Some(4))
    );

    // Parse errors are clap errors naming the flag.
    for bad in [
        "--uri=;extract=true",
        "--uri=http://h/x;extract=maybe",
        "--uri=http://h/x;unpack",
        "--env==v",
        "--env=novalue",
        "--health-check=udp:53",
        "--health-check=tcp:0",
        "--health-check=http:PORTX/",
        "--health-delay=-1",
        "--health-timeout=NaN",
    ] {
        let err = parse(&[bad]).expect_err(&format!("{bad:?} is invalid"));
        let flag = bad.split('=').next().unwrap_or_default();
        assert!(err.to_string().contains(flag), "{bad:?}: {err}");
    }
}

#[test]
fn validation_ties_flags_together() {
    let err = |extra: &[&str]| {
        parse(extra)
            .expect("parses")
            .validate()
            .expect_err("invalid")
            .to_string()
    };
    assert!(err(&["--health-check", "tcp:PORT0"]).contains("PORT0"));
    assert!(err(&["--ports", "1", "--health-check", "tcp:PORT1"]).contains("PORT1"));
    assert!(err(&["--health-failures", "2"]).contains("--health-check"));
    assert!(err(&["--disk", "0"]).contains("--disk"));
    assert!(err(&["--cpus", "0"]).contains("--cpus"));
    // Positive but below the smallest amount: would launch a task with no cpus.
    let tiny = err(&["--cpus", "0.0001"]);
    assert!(
        tiny.contains("--cpus") && tiny.contains("below 0.001"),
        "{tiny}"
    );
    assert!(err(&["--mem", "0.0004"]).contains("below 0.001"));
    assert!(err(&["--disk", "1e13"]).contains("--disk"));
    parse(&["--cpus", "0.001"])
        .expect("parses")
        .validate()
        .expect("the smallest amount is valid");
    parse(&["--ports", "1", "--health-check", "tcp:PORT0"])
        .expect("parses")
        .validate()
        .expect("valid");
}

#[test]
fn parses_uris() {
    let uri = parse_uri("http://h/a.tgz").expect("valid");
    assert_eq!(uri.value, "http://h/a.tgz");
    assert_eq!(
        (uri.extract, uri.executable, uri.cache),
        (Some(true), Some(false), Some(false))
    );
    assert_eq!(uri.output_file, None);

    let uri = parse_uri("http://h/bin ; executable ;cache;extract=false;output_file=tool")
        .expect("valid");
    assert_eq!(uri.value, "http://h/bin");
    assert_eq!(
        (uri.extract, uri.executable, uri.cache),
        (Some(false), Some(true), Some(true))
    );
    assert_eq!(uri.output_file.as_deref(), Some("tool"));
    let uri = parse_uri("x;executable=false;cache=true").expect("valid");
    assert_eq!((uri.executable, uri.cache), (Some(false), Some(true)));

    assert!(parse_uri("").is_err());
    assert!(parse_uri("x;output_file").is_err());
    assert!(parse_uri("x;output_file=a/b").is_err());
    assert!(parse_uri("x;extract=2").is_err());
}

#[test]
fn parses_env_and_seconds() {
    assert_eq!(parse_env("K=V"), Ok(("K".into(), "V".into())));
    assert_eq!(parse_env("K="), Ok(("K".into(), String::new())));
    assert!(parse_env("=V").is_err());
    assert!(parse_env("K").is_err());
    assert_eq!(parse_seconds("0"), Ok(0.0));
    assert_eq!(parse_seconds("2.5"), Ok(2.5));
    for bad in ["-0.1", "inf", "NaN", "x"] {
        assert!(parse_seconds(bad).is_err(), "{bad}");
    }
}

#[test]
fn parses_health_checks() {
    use HealthCheckSpec as H;
    assert_eq!(
        parse_health_check("http:8080/health"),
        Ok(H::Http {
            port: PortRef::Number(8080),
            path: "/health".into()
        })
    );
    assert_eq!(
        parse_health_check("http:PORT0"),
        Ok(H::Http {
            port: PortRef::Allocated(0),
            path: "/".into()
        })
    );
    assert_eq!(
        parse_health_check("tcp:PORT2"),
        Ok(H::Tcp {
            port: PortRef::Allocated(2)
        })
    );
    assert_eq!(
        parse_health_check("cmd:test -f ready"),
        Ok(H::Command("test -f ready".into()))
    );
    for bad in [
        "",
        "http:",
        "http:70000/",
        "http:80/a b",
        "tcp:",
        "tcp:PORT",
        "cmd: ",
        "ftp:21",
    ] {
        assert!(parse_health_check(bad).is_err(), "{bad:?}");
    }
}

fn ports_resource(ranges: &[(u64, u64)]) -> Resource {
    Resource {
        name: "ports".into(),
        r#type: Some(value::Type::Ranges as i32),
        ranges: Some(value::Ranges {
            range: ranges
                .iter()
                .map(|&(begin, end)| value::Range { begin, end })
                .collect(),
        }),
        ..Default::default()
    }
}

fn offer(resources: Vec<Resource>) -> Offer {
    Offer {
        agent_id: Some(AgentId { value: "a1".into() }),
        allocation_info: Some(AllocationInfo {
            role: Some("*".into()),
        }),
        resources,
        ..Default::default()
    }
}

fn demand(ports: usize) -> Demand {
    Demand {
        cpus: 0.1,
        mem: 32.0,
        disk: 0.0,
        ports,
    }
}

#[test]
fn sizes_offers_including_disk_and_ports() {
    let offers = [
        offer(vec![
            scalar_resource("cpus", 1.0),
            scalar_resource("mem", 1024.0),
            ports_resource(&[(31000, 31002)]),
        ]),
        offer(vec![
            scalar_resource("disk", 100.0),
            ports_resource(&[(0, 1), (70000, 70001), (65535, 70000)]),
        ]),
    ];
    let capacity = Capacity::of(&offers);
    assert_eq!(
        (capacity.cpus, capacity.mem, capacity.disk),
        (1.0, 1024.0, 100.0)
    );
    // Port 0 and ports past 65535 are never handed out.
    assert_eq!(capacity.ports, vec![(31000, 31002), (1, 1), (65535, 65535)]);
    assert_eq!(capacity.free_ports(), 5);

    assert_eq!(capacity.fits(&demand(0)), 10);
    assert_eq!(capacity.fits(&demand(2)), 2);
    assert_eq!(capacity.fits(&demand(6)), 0);
    let with_disk = Demand {
        disk: 40.0,
        ..demand(0)
    };
    assert_eq!(capacity.fits(&with_disk), 2);
    assert_eq!(
        Capacity::default().fits(&demand(0)),
        0,
        "an empty offer fits nothing"
    );
    assert_eq!(demand(3).describe(&demand(3)), "cpus:0.1;mem:32;ports:3");
    assert_eq!(capacity.describe(&with_disk), "cpus:1;mem:1024;disk:100");
}

#[test]
fn takes_distinct_ports_for_tasks_of_one_offer() {
    let mut capacity = Capacity {
        ports: vec![(31010, 31010), (31000, 31002)],
        ..Default::default()
    };
    assert_eq!(capacity.take_ports(2), Some(vec![31000, 31001]));
    assert_eq!(capacity.take_ports(2), Some(vec![31002, 31010]));
    assert_eq!(capacity.take_ports(1), None);
    assert_eq!(capacity.take_ports(0), Some(vec![]));

    // Too few: nothing is taken.
    let mut capacity = Capacity {
        ports: vec![(5, 6)],
        ..Default::default()
    };
    assert_eq!(capacity.take_ports(3), None);
    assert_eq!(capacity.free_ports(), 2);
}

#[test]
fn spreads_instances_over_agents() {
    // Two roomy agents share four instances evenly.
    assert_eq!(plan_placement(&[40, 40], 4), vec![2, 2]);
    // Odd counts: no agent gets more than ceil(5 / 2) = 3.
    assert_eq!(plan_placement(&[40, 40], 5), vec![3, 2]);
    // An agent that can take nothing does not count towards the spread.
    assert_eq!(plan_placement(&[0, 40], 4), vec![0, 4]);
    // A small agent takes what fits; the cap still holds for the other.
    assert_eq!(plan_placement(&[1, 40, 40], 6), vec![1, 2, 2]);
    // A single agent takes as many as fit.
    assert_eq!(plan_placement(&[3], 5), vec![3]);
    assert_eq!(plan_placement(&[40], 0), vec![0]);
}

#[test]
fn builds_the_task_info_from_the_flags() {
    let args = parse(&[
        "--uri",
        "http://h/a.tgz;cache",
        "--env",
        "A=1",
        "--ports",
        "2",
        "--disk",
        "64",
        "--user",
        "nobody",
        "--health-check",
        "http:PORT1/ping",
        "--health-failures",
        "5",
    ])
    .expect("valid flags");
    let offer = offer(vec![scalar_resource("cpus", 1.0)]);
    let task = task_info(&args, "n-0".into(), &offer, &[31000, 31001]).expect("task");

    assert_eq!(task.name, "n");
    assert_eq!(task.task_id.as_ref().map(|t| t.value.as_str()), Some("n-0"));
    assert_eq!(scalar_sum(&task.resources, "disk"), 64.0);
    let ports = task
        .resources
        .iter()
        .find(|r| r.name == "ports")
        .expect("ports resource");
    assert_eq!(
        ports.ranges.as_ref().map(|r| r.range.clone()),
        Some(vec![value::Range {
            begin: 31000,
            end: 31001
        }])
    );
    assert!(task.resources.iter().all(|r| r.allocation_info.is_some()));

    let command = task.command.as_ref().expect("command");
    assert_eq!(command.value.as_deref(), Some("c"));
    assert_eq!(command.user.as_deref(), Some("nobody"));
    assert_eq!(command.uris.len(), 1);
    assert_eq!(command.uris[0].value, "http://h/a.tgz");
    assert_eq!(command.uris[0].cache, Some(true));
    let vars = &command.environment.as_ref().expect("environment").variables;
    assert_eq!(vars.len(), 1);
    assert_eq!(
        (vars[0].name.as_str(), vars[0].value.as_deref()),
        ("A", Some("1"))
    );

    let check = task.health_check.as_ref().expect("health check");
    assert_eq!(check.r#type, Some(health_check::Type::Http as i32));
    let http = check.http.as_ref().expect("http");
    assert_eq!((http.port, http.path.as_deref()), (31001, Some("/ping")));
    assert_eq!(check.consecutive_failures, Some(5));
    // Unset timings stay unset: the agent applies Mesos' defaults.
    assert_eq!(check.delay_seconds, None);
    assert_eq!(check.interval_seconds, None);

    // A plain task carries none of it.
    let args = parse(&[]).expect("valid flags");
    let task = task_info(&args, "n-1".into(), &offer, &[]).expect("task");
    assert!(task.health_check.is_none());
    assert!(
        task.resources
            .iter()
            .all(|r| r.name != "ports" && r.name != "disk")
    );
    let command = task.command.expect("command");
    assert!(command.uris.is_empty() && command.environment.is_none() && command.user.is_none());

    // Command and TCP checks.
    let args = parse(&["--health-check", "cmd:test -f ok"]).expect("valid");
    let check = task_info(&args, "n-2".into(), &offer, &[])
        .expect("task")
        .health_check
        .expect("check");
    assert_eq!(check.r#type, Some(health_check::Type::Command as i32));
    assert_eq!(
        check.command.and_then(|c| c.value).as_deref(),
        Some("test -f ok")
    );
    let args = parse(&["--health-check", "tcp:8080"]).expect("valid");
    let check = task_info(&args, "n-3".into(), &offer, &[])
        .expect("task")
        .health_check
        .expect("check");
    assert_eq!(check.tcp.map(|t| t.port), Some(8080));

    // A PORTn the task does not hold is an error, not a port 0.
    let args = parse(&["--health-check", "tcp:PORT0"]).expect("valid");
    assert!(task_info(&args, "n-4".into(), &offer, &[]).is_err());
}

#[test]
fn names_and_commands_the_master_would_refuse_are_refused_before_subscribing() {
    let err = |name: &str, command: &str| {
        let argv = [
            "run",
            "--master",
            "m:1",
            "--name",
            name,
            "--command",
            command,
        ];
        Cli::try_parse_from(argv)
            .expect("parses")
            .args
            .validate()
            .expect_err("invalid")
            .to_string()
    };
    assert!(err("a/b", "true").contains("--name \"a/b\" cannot name tasks"));
    assert!(err(&"n".repeat(300), "true").contains("cannot name tasks"));
    assert!(err("ok", "").contains("--command must not be empty"));
    assert!(err("ok", "  ").contains("--command must not be empty"));
}
