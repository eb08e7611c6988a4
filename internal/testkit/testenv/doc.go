// Package testenv is the integration-test harness for aupguard.
//
// It starts real, private instances of the external systems aupguard talks
// to, each bound to free ports on the loopback interface and keeping all of
// its state in a temporary directory, so that tests of different packages
// can run in parallel without interfering with each other or with any
// system-wide service:
//
//   - [StartRedis]: a single redis-server, which can be stopped, killed and
//     restarted on the same port and data directory (crash/persistence tests);
//   - [StartRedisCluster]: a three-master Redis Cluster;
//   - [StartSink]: an in-process SMTP server that accepts every message and
//     records it;
//   - [StartPostfix]: a private Postfix instance with a plain SMTP listener and
//     a SASL-authenticated submission listener, optionally calling a milter
//     (smtpd_milters and, for sendmail/pickup, non_smtpd_milters) and
//     relaying all mail to a sink; [Postfix.SendmailAs] submits mail with
//     its sendmail(1) as a given Unix user, as PHP mail() or cron would;
//   - [SendMail]: an SMTP client that records every reply of the server
//     instead of failing on the first 4xx/5xx.
//
// Each helper calls [Need] for the programs it runs. When a program is
// missing the test is skipped, except when the environment variable CI is
// "true": then the test fails and names scripts/install-test-deps.sh, which
// installs everything on a Debian machine.
//
// All helpers register their own cleanup with t.Cleanup.
package testenv
