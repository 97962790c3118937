# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_deployhook_global_optspecs
    string join \n log-format= env-file= h/help V/version
end

function __fish_deployhook_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_deployhook_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_deployhook_using_subcommand
    set -l cmd (__fish_deployhook_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c deployhook -n "__fish_deployhook_needs_command" -l log-format -d 'Log format: human-readable text, or one JSON object per line. Filter with RUST_LOG' -r -f -a "text\t''
json\t''"
complete -c deployhook -n "__fish_deployhook_needs_command" -l env-file -d 'Read settings from FILE (KEY=value lines, as .env.example) instead of `.env` in the working directory; variables already set in the environment win. The Debian package\'s service reads /etc/deployhook/env this way; so can commands run on that host: `sudo deployhook --env-file /etc/deployhook/env locks`' -r -F
complete -c deployhook -n "__fish_deployhook_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c deployhook -n "__fish_deployhook_needs_command" -s V -l version -d 'Print version'
complete -c deployhook -n "__fish_deployhook_needs_command" -f -a "serve" -d 'Run the webhook server'
complete -c deployhook -n "__fish_deployhook_needs_command" -f -a "replay" -d 'Sign a saved payload and post it to a running server, the way GitHub would'
complete -c deployhook -n "__fish_deployhook_needs_command" -f -a "try" -d 'Try deployhook on this machine in one command, without GitHub: a server with a throwaway state directory, a stand-in for GitHub, a harmless deploy command, and a merged pull request sent to it; then stays up (dashboard, replay) until Ctrl-C'
complete -c deployhook -n "__fish_deployhook_needs_command" -f -a "stand-in" -d 'A stand-in for GitHub\'s REST API on loopback, for trying deployhook and for tests (not for production): creates deployments and statuses and delivers their webhooks'
complete -c deployhook -n "__fish_deployhook_needs_command" -f -a "check-config" -d 'Validate a config file and print the environments it describes; errors name the line and column'
complete -c deployhook -n "__fish_deployhook_needs_command" -f -a "redeliver" -d 'After downtime: ask GitHub to send again the deliveries that failed and that deployhook never recorded. A dry run unless --apply'
complete -c deployhook -n "__fish_deployhook_needs_command" -f -a "deploy" -d 'Create a deployment through GitHub\'s API (a manual deploy or a rollback); deployhook runs it when GitHub sends the deployment event, like any other'
complete -c deployhook -n "__fish_deployhook_needs_command" -f -a "deployments" -d 'List a repository\'s recent deployments and their latest state'
complete -c deployhook -n "__fish_deployhook_needs_command" -f -a "lock" -d 'Lock an environment: no automatic deploy runs there (merges and promotions wait) until it is unlocked or the lock expires. Talks to the running server'
complete -c deployhook -n "__fish_deployhook_needs_command" -f -a "unlock" -d 'Unlock an environment: what waited runs, in its policy\'s order'
complete -c deployhook -n "__fish_deployhook_needs_command" -f -a "locks" -d 'List the environments locked now'
complete -c deployhook -n "__fish_deployhook_needs_command" -f -a "rollback" -d 'Deploy the last good version again — the last success before the current one, or --to — and lock the environment so the next merge does not roll forward'
complete -c deployhook -n "__fish_deployhook_needs_command" -f -a "calls" -d 'List the GitHub calls (and notifications) given up; `retry ID` or `dismiss ID` one (`all`: every one). Talks to the running server'
complete -c deployhook -n "__fish_deployhook_needs_command" -f -a "deliveries" -d 'List recent deliveries (--refused: those refused, with why and from where), or show one with its headers and the deployments it led to. Talks to the running server'
complete -c deployhook -n "__fish_deployhook_needs_command" -f -a "audit" -d 'List the audit log, newest first: who signed in, locked, unlocked, rolled back, retried or dismissed what, from which address, done or refused. Talks to the running server'
complete -c deployhook -n "__fish_deployhook_needs_command" -f -a "approvals" -d 'List the deployments waiting for approval, with who approved so far and until when they wait. Talks to the running server'
complete -c deployhook -n "__fish_deployhook_needs_command" -f -a "approve" -d 'Approve a deployment waiting for approval, as yourself (a personal token: DEPLOYHOOK_TOKEN). Talks to the running server'
complete -c deployhook -n "__fish_deployhook_needs_command" -f -a "reject" -d 'Reject a deployment waiting for approval: it ends `failure`, saying who and why. Talks to the running server'
complete -c deployhook -n "__fish_deployhook_needs_command" -f -a "log" -d 'Print a deployment\'s log from the running server; --follow streams it to its end and exits with its outcome (0 success, 1 failure, 2 error, 3 inactive; 4 when it could not follow: server unreachable, no deployment event)'
complete -c deployhook -n "__fish_deployhook_needs_command" -f -a "completions" -d 'Print the shell completion script for SHELL (bash, zsh, fish, elvish, powershell)'
complete -c deployhook -n "__fish_deployhook_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c deployhook -n "__fish_deployhook_using_subcommand serve" -l listen -d 'Address (or host name) and port to listen on: 127.0.0.1:4567 is this machine only, 0.0.0.0:4567 every interface' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand serve" -l github-api-url -d 'Base URL of GitHub\'s REST API (GitHub Enterprise Server: https://HOST/api/v3)' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand serve" -l config -d 'A config file describing the environments to deploy (see deployhook.example.toml). Without one, the settings below up to --on-interrupt describe a single environment; with one, they must not be set' -r -F
complete -c deployhook -n "__fish_deployhook_using_subcommand serve" -l public-url -d 'The server\'s public base URL (https://deploy.example.com): statuses then carry a `log_url` pointing at the deploy\'s log here. Unset: no `log_url`' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand serve" -l environment -d 'Environment that deployhook creates deployments for and deploys [default: production]' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand serve" -l branch -d 'Branch whose merged pull requests deploy [default: the repository\'s default branch]' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand serve" -l required-contexts -d 'Commit status contexts GitHub must see passing before it creates a deployment (comma-separated). Empty: deploy the merge commit without checking statuses' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand serve" -l checks -d 'The CI gate: a merge deploys only once these checks of its merge commit are green. `none`: deploy at once; `all`: every check run and status reported on the commit; or check names, comma-separated (`test,lint`) [default: none]' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand serve" -l checks-timeout -d 'How long a merge waits for its checks before it is given up (`timed_out`). Examples: 30m, 2h [default: 1h]' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand serve" -l deploy-command -d 'The deploy command, split into words like a shell would and run without a shell. It learns what to deploy from DEPLOYHOOK_* environment variables' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand serve" -l deploy-timeout -d 'How long a deploy may run before it is stopped (SIGTERM, then SIGKILL) and reported as `error`. Examples: 90s, 15m, 1h [default: 30m]' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand serve" -l pass-env -d 'Names of server environment variables to copy into the deploy command\'s environment (comma-separated). Nothing else of the server\'s environment reaches it but PATH, HOME and LANG' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand serve" -l database -d 'The database holding deliveries, the deploy queue and pending GitHub calls: a SQLite file (created if missing; `:memory:` keeps nothing across restarts), or a PostgreSQL URL (`postgres://user:password@host/db?sslmode=verify-full`) that several replicas share; its password is masked wherever it is shown' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand serve" -l database-sync -d '`full`: an acknowledged delivery survives a power cut (the database log is synced to disk before the answer). `normal`: it survives any crash of deployhook, but a crash of the machine may lose the last moments\' deliveries; faster under heavy load' -r -f -a "full\t'Sync the log to disk at every commit: an acknowledged delivery survives a crash of deployhook, of the machine, and a power cut. One sync serves every batch committed while the previous sync ran'
normal\t'Write the log at every commit, sync it at checkpoints: an acknowledged delivery survives a crash or kill of deployhook; a crash of the machine or a power cut may lose the last moments\' deliveries (GitHub shows them, and they can be redelivered)'"
complete -c deployhook -n "__fish_deployhook_using_subcommand serve" -l database-log-limit -d 'The database\'s write-ahead log is kept under this size, under sustained deliveries and large deploy output alike, and truncated at shutdown' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand serve" -l retain-deliveries -d 'How long deliveries (and the merges they recorded) and dismissed GitHub calls are kept, for the dashboard and to recognise redeliveries. GitHub redelivers for 3 days at most. Refused deliveries: the newest 1,000' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand serve" -l retain-deploys -d 'How long finished deploys and their logs are kept, and the audit log\'s entries. Given-up GitHub calls are kept until retried or dismissed' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand serve" -l checks-poll -d 'How often deployhook asks GitHub for the checks of a commit a merge waits on, in case a check event was missed' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand serve" -l max-concurrent-deploys -d 'Deploys that may run at once, across repositories and environments (one at a time per repository + environment whatever this says)' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand serve" -l policy -d 'When several deployments of one repository + environment wait: run only the newest (`latest`; the others become `inactive`), or run each in order (`queue`) [default: latest]' -r -f -a "queue\t'Run each, oldest first'
latest\t'Run only the newest; the older ones are marked `inactive`, naming it'"
complete -c deployhook -n "__fish_deployhook_using_subcommand serve" -l on-interrupt -d 'A deploy that was running when deployhook stopped: report it as `error` at the next start, or run it again (`retry`; only for deploy commands safe to run twice) [default: error]' -r -f -a "error\t'Report it as `error`: deploy commands need not be safe to run twice'
retry\t'Queue it again'"
complete -c deployhook -n "__fish_deployhook_using_subcommand serve" -l outbox-max-age -d 'How long a GitHub call (create a deployment, post a status) is retried while GitHub is down or rate-limiting before it is given up' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand serve" -l max-connections -d 'Connections the server holds open at once; at the cap a new one takes the place of an idle one, and only when none is idle is it answered 503 and closed. Keep it below the process\'s file-descriptor limit (LimitNOFILE)' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand serve" -l max-connections-per-client -d 'Connections one client address may hold open at once (and, while capped, 32 MiB of request bodies); 0: no cap. Behind a reverse proxy every connection comes from the proxy: set 0 there and cap clients at the proxy' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand serve" -l trusted-proxies -d 'Reverse proxies whose X-Forwarded-For names the client (addresses or networks, comma-separated: 10.0.0.0/8,::1), for the limits on wrong tokens. Empty: the header is ignored and the client is the connection\'s address' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand serve" -l github-client-id -d 'Sign in with GitHub: the client id of the OAuth App (or of deployhook\'s GitHub App) people sign in through; its secret is DEPLOYHOOK_GITHUB_CLIENT_SECRET. Empty: the dashboard\'s only sign-in is the admin token' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand serve" -l github-web-url -d 'GitHub\'s web address, where people sign in (GitHub Enterprise Server: https://HOST). Default: from --github-api-url (https://api.github.com → https://github.com)' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand serve" -l permission-cache -d 'How long a person\'s repository permission and team memberships, read from GitHub, are trusted before they are asked again: a person removed from a repository loses access within this time' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand serve" -l command-prefix -d 'What comment commands in pull requests start with (`.deploy`, `.lock`…): 1 to 10 characters without spaces' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand serve" -l command-environment -d 'Where a bare `.deploy` in a pull request deploys. Empty: the only environment when there is one; otherwise the command must name it (`.deploy to staging`)' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand serve" -l header-timeout -d 'How long a client may take to send a request\'s headers, and how long a connection may sit idle between requests, before it is closed' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand serve" -l shutdown-timeout -d 'On SIGINT/SIGTERM, how long to wait for running deploys before exiting. A second SIGINT/SIGTERM stops them at once' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand serve" -l lease -d 'PostgreSQL only: how long the database waits for a leader replica that went silent (powered off, cut off) before another replica may take over its deploys. A replica that dies outright is replaced within a second, whatever this says' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand serve" -l log-deploy-output -d 'Copy each line a deploy command writes into the server\'s log, at info level (it is always kept in the deploy\'s own log). `false`: only at debug level' -r -f -a "true\t''
false\t''"
complete -c deployhook -n "__fish_deployhook_using_subcommand serve" -l log-format -d 'Log format: human-readable text, or one JSON object per line. Filter with RUST_LOG' -r -f -a "text\t''
json\t''"
complete -c deployhook -n "__fish_deployhook_using_subcommand serve" -l env-file -d 'Read settings from FILE (KEY=value lines, as .env.example) instead of `.env` in the working directory; variables already set in the environment win. The Debian package\'s service reads /etc/deployhook/env this way; so can commands run on that host: `sudo deployhook --env-file /etc/deployhook/env locks`' -r -F
complete -c deployhook -n "__fish_deployhook_using_subcommand serve" -l insecure-skip-signature -d 'Accept unsigned deliveries. Anyone who can reach the server can then trigger deploys: for local experiments only'
complete -c deployhook -n "__fish_deployhook_using_subcommand serve" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c deployhook -n "__fish_deployhook_using_subcommand serve" -s V -l version -d 'Print version'
complete -c deployhook -n "__fish_deployhook_using_subcommand replay" -l event -d 'The event name to send as X-GitHub-Event (pull_request, deployment, ping, …)' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand replay" -l url -d 'The server\'s webhook URL [default: http://DEPLOYHOOK_LISTEN/event_handler, or http://127.0.0.1:4567/event_handler when DEPLOYHOOK_LISTEN is unset]' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand replay" -l secret -d 'Secret to sign with [default: the first of GITHUB_WEBHOOK_SECRET]. Without either, the request goes unsigned' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand replay" -l hook-id -d 'Value for X-GitHub-Hook-ID' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand replay" -l log-format -d 'Log format: human-readable text, or one JSON object per line. Filter with RUST_LOG' -r -f -a "text\t''
json\t''"
complete -c deployhook -n "__fish_deployhook_using_subcommand replay" -l env-file -d 'Read settings from FILE (KEY=value lines, as .env.example) instead of `.env` in the working directory; variables already set in the environment win. The Debian package\'s service reads /etc/deployhook/env this way; so can commands run on that host: `sudo deployhook --env-file /etc/deployhook/env locks`' -r -F
complete -c deployhook -n "__fish_deployhook_using_subcommand replay" -l form -d 'Send `application/x-www-form-urlencoded` with the JSON in the `payload` field instead of `application/json`'
complete -c deployhook -n "__fish_deployhook_using_subcommand replay" -s h -l help -d 'Print help'
complete -c deployhook -n "__fish_deployhook_using_subcommand replay" -s V -l version -d 'Print version'
complete -c deployhook -n "__fish_deployhook_using_subcommand try" -l listen -d 'Where the trial\'s server listens; when that port is taken, a free one is used instead (and said)' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand try" -l deploy-command -d 'Run this deploy command instead of the demo (split into words like a shell would). Only this flag: a DEPLOY_COMMAND in the environment or `.env` is not used, so a trial in a project\'s folder never runs its real deploy by accident' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand try" -l log-format -d 'Log format: human-readable text, or one JSON object per line. Filter with RUST_LOG' -r -f -a "text\t''
json\t''"
complete -c deployhook -n "__fish_deployhook_using_subcommand try" -l env-file -d 'Read settings from FILE (KEY=value lines, as .env.example) instead of `.env` in the working directory; variables already set in the environment win. The Debian package\'s service reads /etc/deployhook/env this way; so can commands run on that host: `sudo deployhook --env-file /etc/deployhook/env locks`' -r -F
complete -c deployhook -n "__fish_deployhook_using_subcommand try" -s h -l help -d 'Print help'
complete -c deployhook -n "__fish_deployhook_using_subcommand try" -s V -l version -d 'Print version'
complete -c deployhook -n "__fish_deployhook_using_subcommand stand-in" -l listen -d 'Address and port to listen on; loopback only (127.0.0.1, ::1, localhost): the stand-in checks no credentials and is not for production' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand stand-in" -l deliver-to -d 'The webhook URL the stand-in delivers its `deployment` and `deployment_status` events to [default: http://DEPLOYHOOK_LISTEN/event_handler, or http://127.0.0.1:4567/event_handler when DEPLOYHOOK_LISTEN is unset]' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand stand-in" -l secret -d 'The secret its deliveries are signed with (X-Hub-Signature-256): the server\'s webhook secret (of several comma-separated ones, the first). Without one, deliveries go unsigned (for `serve --insecure-skip-signature`)' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand stand-in" -l log-format -d 'Log format: human-readable text, or one JSON object per line. Filter with RUST_LOG' -r -f -a "text\t''
json\t''"
complete -c deployhook -n "__fish_deployhook_using_subcommand stand-in" -l env-file -d 'Read settings from FILE (KEY=value lines, as .env.example) instead of `.env` in the working directory; variables already set in the environment win. The Debian package\'s service reads /etc/deployhook/env this way; so can commands run on that host: `sudo deployhook --env-file /etc/deployhook/env locks`' -r -F
complete -c deployhook -n "__fish_deployhook_using_subcommand stand-in" -s h -l help -d 'Print help'
complete -c deployhook -n "__fish_deployhook_using_subcommand stand-in" -s V -l version -d 'Print version'
complete -c deployhook -n "__fish_deployhook_using_subcommand check-config" -l log-format -d 'Log format: human-readable text, or one JSON object per line. Filter with RUST_LOG' -r -f -a "text\t''
json\t''"
complete -c deployhook -n "__fish_deployhook_using_subcommand check-config" -l env-file -d 'Read settings from FILE (KEY=value lines, as .env.example) instead of `.env` in the working directory; variables already set in the environment win. The Debian package\'s service reads /etc/deployhook/env this way; so can commands run on that host: `sudo deployhook --env-file /etc/deployhook/env locks`' -r -F
complete -c deployhook -n "__fish_deployhook_using_subcommand check-config" -l strict -d 'Fail (exit 1) when a working directory or a command the file names is missing, not executable, or a script without a `#!` line on this machine; without it, those are warnings'
complete -c deployhook -n "__fish_deployhook_using_subcommand check-config" -s h -l help -d 'Print help'
complete -c deployhook -n "__fish_deployhook_using_subcommand check-config" -s V -l version -d 'Print version'
complete -c deployhook -n "__fish_deployhook_using_subcommand redeliver" -l repo -d 'The repository whose webhook (--hook-id) missed deliveries' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand redeliver" -l org -d 'The organisation whose webhook (--hook-id) missed deliveries' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand redeliver" -l hook-id -d 'The webhook\'s id (Settings → Webhooks → the hook: the number in its URL; also sent as X-GitHub-Hook-ID)' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand redeliver" -l since -d 'How far back to look. GitHub keeps about three days of deliveries' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand redeliver" -l database -d 'deployhook\'s database (a SQLite file or a PostgreSQL URL), to skip what it recorded' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand redeliver" -l github-api-url -d 'Base URL of GitHub\'s REST API' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand redeliver" -l log-format -d 'Log format: human-readable text, or one JSON object per line. Filter with RUST_LOG' -r -f -a "text\t''
json\t''"
complete -c deployhook -n "__fish_deployhook_using_subcommand redeliver" -l env-file -d 'Read settings from FILE (KEY=value lines, as .env.example) instead of `.env` in the working directory; variables already set in the environment win. The Debian package\'s service reads /etc/deployhook/env this way; so can commands run on that host: `sudo deployhook --env-file /etc/deployhook/env locks`' -r -F
complete -c deployhook -n "__fish_deployhook_using_subcommand redeliver" -l app -d 'The GitHub App\'s own webhook (App mode)'
complete -c deployhook -n "__fish_deployhook_using_subcommand redeliver" -l apply -d 'Redeliver; without it, only print what would be redelivered'
complete -c deployhook -n "__fish_deployhook_using_subcommand redeliver" -s h -l help -d 'Print help'
complete -c deployhook -n "__fish_deployhook_using_subcommand redeliver" -s V -l version -d 'Print version'
complete -c deployhook -n "__fish_deployhook_using_subcommand deploy" -s e -l environment -d 'The environment to deploy to' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand deploy" -l task -d 'The task (see `tasks` in the config file)' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand deploy" -l description -d 'Shown on GitHub' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand deploy" -l server -d 'The running server\'s base URL, for --follow [default: http://DEPLOYHOOK_LISTEN, or http://127.0.0.1:4567]' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand deploy" -l config -d 'The config file whose environments the deployment must name (as `serve` reads it); without one, DEPLOYHOOK_ENVIRONMENT [default: production]' -r -F
complete -c deployhook -n "__fish_deployhook_using_subcommand deploy" -l github-api-url -d 'Base URL of GitHub\'s REST API' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand deploy" -l log-format -d 'Log format: human-readable text, or one JSON object per line. Filter with RUST_LOG' -r -f -a "text\t''
json\t''"
complete -c deployhook -n "__fish_deployhook_using_subcommand deploy" -l env-file -d 'Read settings from FILE (KEY=value lines, as .env.example) instead of `.env` in the working directory; variables already set in the environment win. The Debian package\'s service reads /etc/deployhook/env this way; so can commands run on that host: `sudo deployhook --env-file /etc/deployhook/env locks`' -r -F
complete -c deployhook -n "__fish_deployhook_using_subcommand deploy" -l force -d 'Run it even if the environment is locked (`"force": true` in the payload)'
complete -c deployhook -n "__fish_deployhook_using_subcommand deploy" -l anyway -d 'Create it even though this machine\'s configuration has no such environment, or it does not deploy this repository (a deployment meant for another system)'
complete -c deployhook -n "__fish_deployhook_using_subcommand deploy" -s f -l follow -d 'Then follow it on the running server (DEPLOYHOOK_SERVER, DEPLOYHOOK_ADMIN_TOKEN): stream its log to the end and exit with its outcome, as `deployhook log --follow`'
complete -c deployhook -n "__fish_deployhook_using_subcommand deploy" -s h -l help -d 'Print help'
complete -c deployhook -n "__fish_deployhook_using_subcommand deploy" -s V -l version -d 'Print version'
complete -c deployhook -n "__fish_deployhook_using_subcommand deployments" -s e -l environment -d 'Only this environment\'s' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand deployments" -l limit -d 'How many, newest first' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand deployments" -l github-api-url -d 'Base URL of GitHub\'s REST API' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand deployments" -l log-format -d 'Log format: human-readable text, or one JSON object per line. Filter with RUST_LOG' -r -f -a "text\t''
json\t''"
complete -c deployhook -n "__fish_deployhook_using_subcommand deployments" -l env-file -d 'Read settings from FILE (KEY=value lines, as .env.example) instead of `.env` in the working directory; variables already set in the environment win. The Debian package\'s service reads /etc/deployhook/env this way; so can commands run on that host: `sudo deployhook --env-file /etc/deployhook/env locks`' -r -F
complete -c deployhook -n "__fish_deployhook_using_subcommand deployments" -s h -l help -d 'Print help'
complete -c deployhook -n "__fish_deployhook_using_subcommand deployments" -s V -l version -d 'Print version'
complete -c deployhook -n "__fish_deployhook_using_subcommand lock" -s r -l reason -d 'Why: whoever finds the lock reads it' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand lock" -l for -d 'How long (30m, 2h) [default: until unlocked]' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand lock" -l by -d 'Who acts, as the server records it, with the admin token [default: $SUDO_USER under sudo, else $USER, else the system\'s name for the current user]. Ignored with a personal token (DEPLOYHOOK_TOKEN): the server knows who you are' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand lock" -l server -d 'The running server\'s base URL [default: http://DEPLOYHOOK_LISTEN, or http://127.0.0.1:4567]' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand lock" -l log-format -d 'Log format: human-readable text, or one JSON object per line. Filter with RUST_LOG' -r -f -a "text\t''
json\t''"
complete -c deployhook -n "__fish_deployhook_using_subcommand lock" -l env-file -d 'Read settings from FILE (KEY=value lines, as .env.example) instead of `.env` in the working directory; variables already set in the environment win. The Debian package\'s service reads /etc/deployhook/env this way; so can commands run on that host: `sudo deployhook --env-file /etc/deployhook/env locks`' -r -F
complete -c deployhook -n "__fish_deployhook_using_subcommand lock" -s h -l help -d 'Print help'
complete -c deployhook -n "__fish_deployhook_using_subcommand lock" -s V -l version -d 'Print version'
complete -c deployhook -n "__fish_deployhook_using_subcommand unlock" -l by -d 'Who acts, as the server records it, with the admin token [default: $SUDO_USER under sudo, else $USER, else the system\'s name for the current user]. Ignored with a personal token (DEPLOYHOOK_TOKEN): the server knows who you are' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand unlock" -l server -d 'The running server\'s base URL [default: http://DEPLOYHOOK_LISTEN, or http://127.0.0.1:4567]' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand unlock" -l log-format -d 'Log format: human-readable text, or one JSON object per line. Filter with RUST_LOG' -r -f -a "text\t''
json\t''"
complete -c deployhook -n "__fish_deployhook_using_subcommand unlock" -l env-file -d 'Read settings from FILE (KEY=value lines, as .env.example) instead of `.env` in the working directory; variables already set in the environment win. The Debian package\'s service reads /etc/deployhook/env this way; so can commands run on that host: `sudo deployhook --env-file /etc/deployhook/env locks`' -r -F
complete -c deployhook -n "__fish_deployhook_using_subcommand unlock" -s h -l help -d 'Print help'
complete -c deployhook -n "__fish_deployhook_using_subcommand unlock" -s V -l version -d 'Print version'
complete -c deployhook -n "__fish_deployhook_using_subcommand locks" -l server -d 'The running server\'s base URL [default: http://DEPLOYHOOK_LISTEN, or http://127.0.0.1:4567]' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand locks" -l log-format -d 'Log format: human-readable text, or one JSON object per line. Filter with RUST_LOG' -r -f -a "text\t''
json\t''"
complete -c deployhook -n "__fish_deployhook_using_subcommand locks" -l env-file -d 'Read settings from FILE (KEY=value lines, as .env.example) instead of `.env` in the working directory; variables already set in the environment win. The Debian package\'s service reads /etc/deployhook/env this way; so can commands run on that host: `sudo deployhook --env-file /etc/deployhook/env locks`' -r -F
complete -c deployhook -n "__fish_deployhook_using_subcommand locks" -s h -l help -d 'Print help'
complete -c deployhook -n "__fish_deployhook_using_subcommand locks" -s V -l version -d 'Print version'
complete -c deployhook -n "__fish_deployhook_using_subcommand rollback" -s e -l environment -d 'The environment to roll back' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand rollback" -l to -d 'The commit to put back: a SHA, or its first 7+ digits among those deployed there [default: the last success before the current one]' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand rollback" -l by -d 'Who acts, as the server records it, with the admin token [default: $SUDO_USER under sudo, else $USER, else the system\'s name for the current user]. Ignored with a personal token (DEPLOYHOOK_TOKEN): the server knows who you are' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand rollback" -l server -d 'The running server\'s base URL [default: http://DEPLOYHOOK_LISTEN, or http://127.0.0.1:4567]' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand rollback" -l log-format -d 'Log format: human-readable text, or one JSON object per line. Filter with RUST_LOG' -r -f -a "text\t''
json\t''"
complete -c deployhook -n "__fish_deployhook_using_subcommand rollback" -l env-file -d 'Read settings from FILE (KEY=value lines, as .env.example) instead of `.env` in the working directory; variables already set in the environment win. The Debian package\'s service reads /etc/deployhook/env this way; so can commands run on that host: `sudo deployhook --env-file /etc/deployhook/env locks`' -r -F
complete -c deployhook -n "__fish_deployhook_using_subcommand rollback" -s h -l help -d 'Print help'
complete -c deployhook -n "__fish_deployhook_using_subcommand rollback" -s V -l version -d 'Print version'
complete -c deployhook -n "__fish_deployhook_using_subcommand calls" -l by -d 'Who acts, as the server records it, with the admin token [default: $SUDO_USER under sudo, else $USER, else the system\'s name for the current user]. Ignored with a personal token (DEPLOYHOOK_TOKEN): the server knows who you are' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand calls" -l server -d 'The running server\'s base URL [default: http://DEPLOYHOOK_LISTEN, or http://127.0.0.1:4567]' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand calls" -l log-format -d 'Log format: human-readable text, or one JSON object per line. Filter with RUST_LOG' -r -f -a "text\t''
json\t''"
complete -c deployhook -n "__fish_deployhook_using_subcommand calls" -l env-file -d 'Read settings from FILE (KEY=value lines, as .env.example) instead of `.env` in the working directory; variables already set in the environment win. The Debian package\'s service reads /etc/deployhook/env this way; so can commands run on that host: `sudo deployhook --env-file /etc/deployhook/env locks`' -r -F
complete -c deployhook -n "__fish_deployhook_using_subcommand calls" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c deployhook -n "__fish_deployhook_using_subcommand calls" -s V -l version -d 'Print version'
complete -c deployhook -n "__fish_deployhook_using_subcommand deliveries" -l limit -d 'How many to list, newest first' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand deliveries" -l hook -d 'With an id that came through several hooks: the hook\'s (X-GitHub-Hook-ID)' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand deliveries" -l server -d 'The running server\'s base URL [default: http://DEPLOYHOOK_LISTEN, or http://127.0.0.1:4567]' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand deliveries" -l log-format -d 'Log format: human-readable text, or one JSON object per line. Filter with RUST_LOG' -r -f -a "text\t''
json\t''"
complete -c deployhook -n "__fish_deployhook_using_subcommand deliveries" -l env-file -d 'Read settings from FILE (KEY=value lines, as .env.example) instead of `.env` in the working directory; variables already set in the environment win. The Debian package\'s service reads /etc/deployhook/env this way; so can commands run on that host: `sudo deployhook --env-file /etc/deployhook/env locks`' -r -F
complete -c deployhook -n "__fish_deployhook_using_subcommand deliveries" -l refused -d 'Refused deliveries instead of recorded ones'
complete -c deployhook -n "__fish_deployhook_using_subcommand deliveries" -s h -l help -d 'Print help'
complete -c deployhook -n "__fish_deployhook_using_subcommand deliveries" -s V -l version -d 'Print version'
complete -c deployhook -n "__fish_deployhook_using_subcommand audit" -l limit -d 'How many entries to list, newest first' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand audit" -l actor -d 'Only this actor\'s: a GitHub login, or the name the admin token\'s user gave (--by)' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand audit" -l action -d 'Only this action' -r -f -a "sign_in\t''
sign_out\t''
lock\t''
unlock\t''
deploy\t''
force\t''
rollback\t''
approve\t''
reject\t''
retry\t''
dismiss\t''
token_created\t''
token_revoked\t''"
complete -c deployhook -n "__fish_deployhook_using_subcommand audit" -s e -l environment -d 'Only this environment\'s' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand audit" -l repository -d 'Only this repository\'s (owner/name)' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand audit" -l before -d 'Only entries older than this one (the id a listing\'s last line gives)' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand audit" -l server -d 'The running server\'s base URL [default: http://DEPLOYHOOK_LISTEN, or http://127.0.0.1:4567]' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand audit" -l log-format -d 'Log format: human-readable text, or one JSON object per line. Filter with RUST_LOG' -r -f -a "text\t''
json\t''"
complete -c deployhook -n "__fish_deployhook_using_subcommand audit" -l env-file -d 'Read settings from FILE (KEY=value lines, as .env.example) instead of `.env` in the working directory; variables already set in the environment win. The Debian package\'s service reads /etc/deployhook/env this way; so can commands run on that host: `sudo deployhook --env-file /etc/deployhook/env locks`' -r -F
complete -c deployhook -n "__fish_deployhook_using_subcommand audit" -l json -d 'Print the server\'s answer as JSON instead of a table'
complete -c deployhook -n "__fish_deployhook_using_subcommand audit" -s h -l help -d 'Print help'
complete -c deployhook -n "__fish_deployhook_using_subcommand audit" -s V -l version -d 'Print version'
complete -c deployhook -n "__fish_deployhook_using_subcommand approvals" -l server -d 'The running server\'s base URL [default: http://DEPLOYHOOK_LISTEN, or http://127.0.0.1:4567]' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand approvals" -l log-format -d 'Log format: human-readable text, or one JSON object per line. Filter with RUST_LOG' -r -f -a "text\t''
json\t''"
complete -c deployhook -n "__fish_deployhook_using_subcommand approvals" -l env-file -d 'Read settings from FILE (KEY=value lines, as .env.example) instead of `.env` in the working directory; variables already set in the environment win. The Debian package\'s service reads /etc/deployhook/env this way; so can commands run on that host: `sudo deployhook --env-file /etc/deployhook/env locks`' -r -F
complete -c deployhook -n "__fish_deployhook_using_subcommand approvals" -s h -l help -d 'Print help'
complete -c deployhook -n "__fish_deployhook_using_subcommand approvals" -s V -l version -d 'Print version'
complete -c deployhook -n "__fish_deployhook_using_subcommand approve" -l server -d 'The running server\'s base URL [default: http://DEPLOYHOOK_LISTEN, or http://127.0.0.1:4567]' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand approve" -l log-format -d 'Log format: human-readable text, or one JSON object per line. Filter with RUST_LOG' -r -f -a "text\t''
json\t''"
complete -c deployhook -n "__fish_deployhook_using_subcommand approve" -l env-file -d 'Read settings from FILE (KEY=value lines, as .env.example) instead of `.env` in the working directory; variables already set in the environment win. The Debian package\'s service reads /etc/deployhook/env this way; so can commands run on that host: `sudo deployhook --env-file /etc/deployhook/env locks`' -r -F
complete -c deployhook -n "__fish_deployhook_using_subcommand approve" -s h -l help -d 'Print help'
complete -c deployhook -n "__fish_deployhook_using_subcommand approve" -s V -l version -d 'Print version'
complete -c deployhook -n "__fish_deployhook_using_subcommand reject" -l reason -d 'Why, for the deployment\'s status and whoever asked for it' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand reject" -l server -d 'The running server\'s base URL [default: http://DEPLOYHOOK_LISTEN, or http://127.0.0.1:4567]' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand reject" -l log-format -d 'Log format: human-readable text, or one JSON object per line. Filter with RUST_LOG' -r -f -a "text\t''
json\t''"
complete -c deployhook -n "__fish_deployhook_using_subcommand reject" -l env-file -d 'Read settings from FILE (KEY=value lines, as .env.example) instead of `.env` in the working directory; variables already set in the environment win. The Debian package\'s service reads /etc/deployhook/env this way; so can commands run on that host: `sudo deployhook --env-file /etc/deployhook/env locks`' -r -F
complete -c deployhook -n "__fish_deployhook_using_subcommand reject" -s h -l help -d 'Print help'
complete -c deployhook -n "__fish_deployhook_using_subcommand reject" -s V -l version -d 'Print version'
complete -c deployhook -n "__fish_deployhook_using_subcommand log" -l server -d 'The running server\'s base URL [default: http://DEPLOYHOOK_LISTEN, or http://127.0.0.1:4567]' -r
complete -c deployhook -n "__fish_deployhook_using_subcommand log" -l log-format -d 'Log format: human-readable text, or one JSON object per line. Filter with RUST_LOG' -r -f -a "text\t''
json\t''"
complete -c deployhook -n "__fish_deployhook_using_subcommand log" -l env-file -d 'Read settings from FILE (KEY=value lines, as .env.example) instead of `.env` in the working directory; variables already set in the environment win. The Debian package\'s service reads /etc/deployhook/env this way; so can commands run on that host: `sudo deployhook --env-file /etc/deployhook/env locks`' -r -F
complete -c deployhook -n "__fish_deployhook_using_subcommand log" -s f -l follow -d 'Wait for the deployment to run, stream its log to the end, and exit with its outcome'
complete -c deployhook -n "__fish_deployhook_using_subcommand log" -s h -l help -d 'Print help'
complete -c deployhook -n "__fish_deployhook_using_subcommand log" -s V -l version -d 'Print version'
complete -c deployhook -n "__fish_deployhook_using_subcommand completions" -l log-format -d 'Log format: human-readable text, or one JSON object per line. Filter with RUST_LOG' -r -f -a "text\t''
json\t''"
complete -c deployhook -n "__fish_deployhook_using_subcommand completions" -l env-file -d 'Read settings from FILE (KEY=value lines, as .env.example) instead of `.env` in the working directory; variables already set in the environment win. The Debian package\'s service reads /etc/deployhook/env this way; so can commands run on that host: `sudo deployhook --env-file /etc/deployhook/env locks`' -r -F
complete -c deployhook -n "__fish_deployhook_using_subcommand completions" -s h -l help -d 'Print help'
complete -c deployhook -n "__fish_deployhook_using_subcommand completions" -s V -l version -d 'Print version'
complete -c deployhook -n "__fish_deployhook_using_subcommand help; and not __fish_seen_subcommand_from serve replay try stand-in check-config redeliver deploy deployments lock unlock locks rollback calls deliveries audit approvals approve reject log completions help" -f -a "serve" -d 'Run the webhook server'
complete -c deployhook -n "__fish_deployhook_using_subcommand help; and not __fish_seen_subcommand_from serve replay try stand-in check-config redeliver deploy deployments lock unlock locks rollback calls deliveries audit approvals approve reject log completions help" -f -a "replay" -d 'Sign a saved payload and post it to a running server, the way GitHub would'
complete -c deployhook -n "__fish_deployhook_using_subcommand help; and not __fish_seen_subcommand_from serve replay try stand-in check-config redeliver deploy deployments lock unlock locks rollback calls deliveries audit approvals approve reject log completions help" -f -a "try" -d 'Try deployhook on this machine in one command, without GitHub: a server with a throwaway state directory, a stand-in for GitHub, a harmless deploy command, and a merged pull request sent to it; then stays up (dashboard, replay) until Ctrl-C'
complete -c deployhook -n "__fish_deployhook_using_subcommand help; and not __fish_seen_subcommand_from serve replay try stand-in check-config redeliver deploy deployments lock unlock locks rollback calls deliveries audit approvals approve reject log completions help" -f -a "stand-in" -d 'A stand-in for GitHub\'s REST API on loopback, for trying deployhook and for tests (not for production): creates deployments and statuses and delivers their webhooks'
complete -c deployhook -n "__fish_deployhook_using_subcommand help; and not __fish_seen_subcommand_from serve replay try stand-in check-config redeliver deploy deployments lock unlock locks rollback calls deliveries audit approvals approve reject log completions help" -f -a "check-config" -d 'Validate a config file and print the environments it describes; errors name the line and column'
complete -c deployhook -n "__fish_deployhook_using_subcommand help; and not __fish_seen_subcommand_from serve replay try stand-in check-config redeliver deploy deployments lock unlock locks rollback calls deliveries audit approvals approve reject log completions help" -f -a "redeliver" -d 'After downtime: ask GitHub to send again the deliveries that failed and that deployhook never recorded. A dry run unless --apply'
complete -c deployhook -n "__fish_deployhook_using_subcommand help; and not __fish_seen_subcommand_from serve replay try stand-in check-config redeliver deploy deployments lock unlock locks rollback calls deliveries audit approvals approve reject log completions help" -f -a "deploy" -d 'Create a deployment through GitHub\'s API (a manual deploy or a rollback); deployhook runs it when GitHub sends the deployment event, like any other'
complete -c deployhook -n "__fish_deployhook_using_subcommand help; and not __fish_seen_subcommand_from serve replay try stand-in check-config redeliver deploy deployments lock unlock locks rollback calls deliveries audit approvals approve reject log completions help" -f -a "deployments" -d 'List a repository\'s recent deployments and their latest state'
complete -c deployhook -n "__fish_deployhook_using_subcommand help; and not __fish_seen_subcommand_from serve replay try stand-in check-config redeliver deploy deployments lock unlock locks rollback calls deliveries audit approvals approve reject log completions help" -f -a "lock" -d 'Lock an environment: no automatic deploy runs there (merges and promotions wait) until it is unlocked or the lock expires. Talks to the running server'
complete -c deployhook -n "__fish_deployhook_using_subcommand help; and not __fish_seen_subcommand_from serve replay try stand-in check-config redeliver deploy deployments lock unlock locks rollback calls deliveries audit approvals approve reject log completions help" -f -a "unlock" -d 'Unlock an environment: what waited runs, in its policy\'s order'
complete -c deployhook -n "__fish_deployhook_using_subcommand help; and not __fish_seen_subcommand_from serve replay try stand-in check-config redeliver deploy deployments lock unlock locks rollback calls deliveries audit approvals approve reject log completions help" -f -a "locks" -d 'List the environments locked now'
complete -c deployhook -n "__fish_deployhook_using_subcommand help; and not __fish_seen_subcommand_from serve replay try stand-in check-config redeliver deploy deployments lock unlock locks rollback calls deliveries audit approvals approve reject log completions help" -f -a "rollback" -d 'Deploy the last good version again — the last success before the current one, or --to — and lock the environment so the next merge does not roll forward'
complete -c deployhook -n "__fish_deployhook_using_subcommand help; and not __fish_seen_subcommand_from serve replay try stand-in check-config redeliver deploy deployments lock unlock locks rollback calls deliveries audit approvals approve reject log completions help" -f -a "calls" -d 'List the GitHub calls (and notifications) given up; `retry ID` or `dismiss ID` one (`all`: every one). Talks to the running server'
complete -c deployhook -n "__fish_deployhook_using_subcommand help; and not __fish_seen_subcommand_from serve replay try stand-in check-config redeliver deploy deployments lock unlock locks rollback calls deliveries audit approvals approve reject log completions help" -f -a "deliveries" -d 'List recent deliveries (--refused: those refused, with why and from where), or show one with its headers and the deployments it led to. Talks to the running server'
complete -c deployhook -n "__fish_deployhook_using_subcommand help; and not __fish_seen_subcommand_from serve replay try stand-in check-config redeliver deploy deployments lock unlock locks rollback calls deliveries audit approvals approve reject log completions help" -f -a "audit" -d 'List the audit log, newest first: who signed in, locked, unlocked, rolled back, retried or dismissed what, from which address, done or refused. Talks to the running server'
complete -c deployhook -n "__fish_deployhook_using_subcommand help; and not __fish_seen_subcommand_from serve replay try stand-in check-config redeliver deploy deployments lock unlock locks rollback calls deliveries audit approvals approve reject log completions help" -f -a "approvals" -d 'List the deployments waiting for approval, with who approved so far and until when they wait. Talks to the running server'
complete -c deployhook -n "__fish_deployhook_using_subcommand help; and not __fish_seen_subcommand_from serve replay try stand-in check-config redeliver deploy deployments lock unlock locks rollback calls deliveries audit approvals approve reject log completions help" -f -a "approve" -d 'Approve a deployment waiting for approval, as yourself (a personal token: DEPLOYHOOK_TOKEN). Talks to the running server'
complete -c deployhook -n "__fish_deployhook_using_subcommand help; and not __fish_seen_subcommand_from serve replay try stand-in check-config redeliver deploy deployments lock unlock locks rollback calls deliveries audit approvals approve reject log completions help" -f -a "reject" -d 'Reject a deployment waiting for approval: it ends `failure`, saying who and why. Talks to the running server'
complete -c deployhook -n "__fish_deployhook_using_subcommand help; and not __fish_seen_subcommand_from serve replay try stand-in check-config redeliver deploy deployments lock unlock locks rollback calls deliveries audit approvals approve reject log completions help" -f -a "log" -d 'Print a deployment\'s log from the running server; --follow streams it to its end and exits with its outcome (0 success, 1 failure, 2 error, 3 inactive; 4 when it could not follow: server unreachable, no deployment event)'
complete -c deployhook -n "__fish_deployhook_using_subcommand help; and not __fish_seen_subcommand_from serve replay try stand-in check-config redeliver deploy deployments lock unlock locks rollback calls deliveries audit approvals approve reject log completions help" -f -a "completions" -d 'Print the shell completion script for SHELL (bash, zsh, fish, elvish, powershell)'
complete -c deployhook -n "__fish_deployhook_using_subcommand help; and not __fish_seen_subcommand_from serve replay try stand-in check-config redeliver deploy deployments lock unlock locks rollback calls deliveries audit approvals approve reject log completions help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
