//! Coming from IO::Async: each Perl class, option and event, and its
//! ioasync form.
//!
//! # Concepts
//!
//! | IO::Async | ioasync |
//! |---|---|
//! | `IO::Async::Loop->new` | [`Loop::new`](crate::Loop::new) (own runtime) or [`Loop::current`](crate::Loop::current) (inside `#[tokio::main]`) |
//! | `$loop->run` / `$loop->stop($v)` | [`Loop::run`](crate::Loop::run) returns the value given to [`Loop::stop`](crate::Loop::stop) |
//! | `$loop->add($n)` / `$loop->remove($n)` | [`Loop::add`](crate::Loop::add) / [`Loop::remove`](crate::Loop::remove) (stops the subtree, leaves first) |
//! | `$loop->later(sub)` | [`Loop::later`](crate::Loop::later) |
//! | `$loop->watch_time(after =>, code =>)` / `unwatch_time` | [`Loop::watch_time`](crate::Loop::watch_time) returns a [`TimerWatch`](crate::time::TimerWatch): `cancel()`, or dropping it, unwatches; `detach()` lets it fire |
//! | `$loop->attach_signal(NAME, code)` / `detach_signal` | [`Loop::attach_signal`](crate::Loop::attach_signal) returns a [`Watch`](crate::notifier::Watch): `cancel()`, or dropping it, detaches |
//! | `$loop->watch_process(pid, code)` / `unwatch_process` | [`Loop::watch_process`](crate::Loop::watch_process) returns a [`Watch`](crate::notifier::Watch): `cancel()`, or dropping it, unwatches |
//! | `$loop->delay_future(after =>)` / `timeout_future` | [`Loop::delay_future`](crate::Loop::delay_future) / [`Loop::timeout_future`](crate::Loop::timeout_future) |
//! | `IO::Async::Notifier` | a type implementing [`Notifier`](crate::notifier::Notifier), run as a supervised kameo actor |
//! | `$notifier->add_child` / `remove_child` | [`Ctx::add_child`](crate::notifier::Ctx::add_child), [`NotifierRef::add_child`](crate::notifier::NotifierRef::add_child) / [`NotifierRef::stop`](crate::notifier::NotifierRef::stop) |
//! | `$notifier->invoke_event(on_foo => ...)` | [`Ctx::emit`](crate::notifier::Ctx::emit) |
//! | `on_foo => sub {...}` configured events | [`Subscription::closure`](crate::notifier::Subscription::closure), or a typed message to an actor, or a stream |
//! | a failure as `($message, $operation, @args)` | [`Error`](crate::Error): `message()`, `op()`, `errno()` |
//!
//! What IO::Async does not have: supervision. A notifier that dies (a
//! panic in a handler) is restarted by its parent per its
//! [`Spec`](crate::notifier::Spec): [`Restart`](crate::supervision::Restart),
//! [`Strategy`](crate::supervision::Strategy), restart limit, [`Backoff`](crate::supervision::Backoff).
//!
//! # Handles and streams
//!
//! | IO::Async | ioasync |
//! |---|---|
//! | `IO::Async::Handle` (`read_handle`, `write_handle`, `on_read_ready`, `on_write_ready`, `want_readready`, `want_writeready`) | [`Handle`](crate::io::Handle): `on_read_ready`, `on_write_ready`, [`HandleIo::want_read`](crate::io::HandleIo::want_read) / `want_write`, [`HandleRef::want_ready`](crate::io::HandleRef::want_ready) |
//! | `IO::Async::Stream` `on_read => sub { my ($self, $buffref, $eof) = @_; ...; return 0 }` | [`StreamSpec::on_read`](crate::io::StreamSpec::on_read): `\|io, buf, eof\| ... ReadAction::Wait` ([`ReadAction::Again`](crate::io::ReadAction::Again) for `return 1`) |
//! | `$stream->write($data)` and its future | [`StreamRef::write`](crate::io::StreamRef::write) resolves when written; inside `on_read`: [`StreamIo::write`](crate::io::StreamIo::write) / [`write_slice`](crate::io::StreamIo::write_slice) |
//! | `close_when_empty`, `close_now` | [`StreamRef::close_when_empty`](crate::io::StreamRef::close_when_empty), [`StreamRef::close_now`](crate::io::StreamRef::close_now) |
//! | `on_read_eof`, `on_write_eof`, `on_read_error`, `on_write_error`, `on_outgoing_empty`, `on_closed` | [`StreamEvent`](crate::io::StreamEvent): `ReadEof`, `WriteEof`, `ReadError`, `WriteError`, `Flushed`, `Closed` |
//! | `IO::Async::Stream->new_for_stdio` / `new_for_stdin` / `new_for_stdout` | [`Stream::stdio`](crate::io::Stream::stdio) / [`Stream::stdin`](crate::io::Stream::stdin) / [`Stream::stdout`](crate::io::Stream::stdout) |
//! | `close_on_read_eof` | [`StreamSpec::close_on_read_eof`](crate::io::StreamSpec::close_on_read_eof) |
//! | `read_high_watermark`, `read_low_watermark`, `write_high_watermark` | [`Limits`](crate::io::Limits) (writers wait above the write high watermark); events `ReadHighWatermark` / `ReadLowWatermark` |
//! | `read_atmost`, `read_exactly`, `read_until`, `read_until_eof` (Futures) | [`StreamRef::read`](crate::io::StreamRef::read) with [`ReadFor`](crate::io::ReadFor) |
//! | `IO::Async::Protocol::Stream`, `Protocol::LineStream` | [`Framed`](crate::io::Framed) with a [`codec`](crate::io::codec) (`LinesCodec`, `LengthDelimitedCodec`, yours) |
//! | `IO::Async::Socket` (`on_recv`, `send`) | [`Socket`](crate::io::Socket): [`SocketEvent::Recv`](crate::io::SocketEvent::Recv), [`SocketRef::send_to`](crate::io::SocketRef::send_to) |
//! | `IO::Async::Listener` (`on_stream`, `on_accept_error`) | [`Listener::spec`](crate::io::Listener::spec)`(name, listen, \|conn, peer\| spec)`, [`ListenerEvent::AcceptError`](crate::io::ListenerEvent::AcceptError) |
//! | `$loop->connect(host =>, service =>, socktype =>)` | [`Loop::connect`](crate::Loop::connect)`(addr)` (Happy Eyeballs), `.datagram()` for `socktype => 'dgram'` |
//! | `$loop->listen(...)` | [`Loop::listen`](crate::Loop::listen) with [`Listen`](crate::io::Listen) (`backlog`, `reuseaddr`, `v6only`) |
//! | `$loop->resolver->getaddrinfo` / `getnameinfo` | [`Loop::resolve`](crate::Loop::resolve), [`resolve`](crate::io::resolve()), [`name_of`](crate::io::name_of) |
//!
//! # Timers, signals, processes
//!
//! | IO::Async | ioasync |
//! |---|---|
//! | `IO::Async::Timer::Absolute` (`time =>`, `on_expire`) | [`Absolute::spec`](crate::time::Absolute::spec), event [`Expired`](crate::time::Expired) |
//! | `IO::Async::Timer::Countdown` (`delay`, `start`, `stop`, `reset`, `is_running`, `is_expired`, `remove_on_expire`) | [`Countdown`](crate::time::Countdown) and [`CountdownRef`](crate::time::CountdownRef) |
//! | `IO::Async::Timer::Periodic` (`interval`, `first_interval`, `reschedule => hard/skip/drift`, `on_tick`) | [`Periodic`](crate::time::Periodic), [`Reschedule`](crate::time::Reschedule), event [`Tick`](crate::time::Tick) |
//! | `IO::Async::Signal` (`name => 'USR1'`, `on_receipt`) | [`Signal::spec`](crate::signal::Signal::spec)`(name, "USR1".parse()?)`, event [`SignalEvent`](crate::signal::SignalEvent) |
//! | `IO::Async::PID` (`pid`, `on_exit`) | [`Pid::spec`](crate::process::Pid::spec), event [`ExitStatus`](crate::process::ExitStatus) |
//! | `IO::Async::Process` (`command`, `stdin`/`stdout`/`stderr`/`fdN` with `via => 'pipe_read'`, `on_finish`, `on_exception`, `kill`) | [`Process::spec`](crate::process::Process::spec) with a [`Command`](crate::process::Command) and [`Stdio`](crate::process::Stdio); [`ProcessEvent::Finished`](crate::process::ProcessEvent::Finished), [`ProcessEvent::Exception`](crate::process::ProcessEvent::Exception); [`ProcessHandle::kill`](crate::process::ProcessHandle::kill) |
//! | `$loop->spawn_child`, `$loop->run_process` / `run_child`, `$loop->open_process` | [`Loop::spawn_child`](crate::Loop::spawn_child), [`Loop::run_child`](crate::Loop::run_child), [`Loop::open_process`](crate::Loop::open_process) |
//! | `$exitcode` (a wait status) | [`ExitStatus`](crate::process::ExitStatus): a code, or a signal and a core flag |
//!
//! # Workers
//!
//! | IO::Async | ioasync |
//! |---|---|
//! | `IO::Async::Function->new(code => sub {...}, min_workers, max_workers, idle_timeout, max_worker_calls, exit_on_die, setup)` | [`Function::spec`](crate::worker::Function::spec)`(name, entry)` (or [`EntryPoint::pool`](crate::worker::EntryPoint::pool)) with the same options ([`exit_on_die`](crate::worker::FunctionSpec::exit_on_die), [`worker_setup`](crate::worker::FunctionSpec::worker_setup)); the code is an [`Entry`](crate::worker::Entry) registered with [`run_if_worker`](crate::worker::run_if_worker) at the top of `main` |
//! | `init_code` (once per worker) | [`Entry::with_state`](crate::worker::Entry::with_state) / [`EntryPoint::runs_with`](crate::worker::EntryPoint::runs_with): per-worker state built at worker start |
//! | `die [msg, category, @details]` in the code | an entry returning `Result<T, `[`Failure`](crate::worker::Failure)`>` |
//! | `$function->call(args => [...], priority => N)` (a Future) | [`FunctionRef::call`](crate::worker::FunctionRef::call) (serde arguments and results), [`call_with`](crate::worker::FunctionRef::call_with) for a timeout, retry-safety or [`priority`](crate::worker::CallOptions::priority); typed: [`EntryPoint::on`](crate::worker::EntryPoint::on) |
//! | `$function->restart`, `workers_busy`, `workers_idle` | [`FunctionRef::restart_workers`](crate::worker::FunctionRef::restart_workers), [`FunctionStats`](crate::worker::FunctionStats) `busy`, `idle`; each worker is a child `worker-<pid>` of the pool in the tree |
//! | `IO::Async::Channel` | [`channel::channel`](crate::channel::channel) (local) and [`channel::bridge`](crate::channel::bridge) (over a socket to another process) |
//! | `IO::Async::Routine->new(code =>, channels_in =>, channels_out =>, setup, on_finish, on_die)`, `->kill(sig)` | [`Routine::spec`](crate::worker::Routine::spec)`(name, entry, capacity)` with an [`Entry::routine`](crate::worker::Entry::routine) and [`worker_setup`](crate::worker::RoutineSpec::worker_setup); more channels with [`channel_in`](crate::worker::RoutineSpec::channel_in) / [`channel_out`](crate::worker::RoutineSpec::channel_out) (read and written in the worker with [`recv_on`](crate::worker::RoutineIo::recv_on) / [`send_on`](crate::worker::RoutineIo::send_on)), one routine's output into another with [`channel_in_from`](crate::worker::RoutineSpec::channel_in_from); its [`RoutineIoHandle`](crate::worker::RoutineIoHandle) holds the input, the output and the result; a panic arrives as [`ExitReason::Panicked`](crate::supervision::ExitReason::Panicked); [`RoutineRef::signal`](crate::worker::RoutineRef::signal) signals it |
//!
//! Workers are the program's own binary re-executed with an entry name,
//! never a `fork` of a process running tokio threads.
//!
//! # Files
//!
//! | IO::Async | ioasync |
//! |---|---|
//! | `IO::Async::File` (`filename`, `interval`, `on_size_changed`, `on_mtime_changed`, `on_stat_changed`, `on_devino_changed`, ...) | [`File::spec`](crate::fs::File::spec), events [`FileEvent`](crate::fs::FileEvent) (`Size`, `Mtime`, `Mode`, `Inode`, `Nlink`, `Owner`, `Changed`, `Appeared`, `Vanished`) |
//! | `IO::Async::FileStream` (`on_read`, `on_truncated`, `on_initial`, `seek_to_last`) | [`FileStream::spec`](crate::fs::FileStream::spec) with [`on_initial`](crate::fs::FileStreamSpec::on_initial) ([`Initial`](crate::fs::Initial): `size`, `seek`, `seek_to_last`), [`StartAt`](crate::fs::StartAt) and [`OnTruncate`](crate::fs::OnTruncate); events [`FileStreamEvent`](crate::fs::FileStreamEvent); inotify with polling as the backstop ([`WatchMode`](crate::fs::WatchMode)) |
//! | `$loop->watch_file` / `unwatch_file` (IO::Async's TODO) | [`Loop::watch_file`](crate::Loop::watch_file) returns a [`Watch`](crate::notifier::Watch): `cancel()`, or dropping it, unwatches |
//! | `IO::Async::Protocol` over a `Socket` | [`FramedSocket`](crate::io::FramedSocket) with a [`codec`](crate::io::codec) |
//!
//! # Futures of things that complete once
//!
//! A process's exit: [`ProcessHandle::wait`](crate::process::ProcessHandle::wait);
//! a Pid's: its [`ExitStatus`](crate::process::ExitStatus) event; a stream's close:
//! [`StreamRef::closed`](crate::io::StreamRef::closed); a listener's next
//! accept: [`ListenerRef::next_accept`](crate::io::ListenerRef::next_accept); a
//! countdown's expiry: [`CountdownRef::expired`](crate::time::CountdownRef::expired);
//! a signal's next delivery: [`SignalRef::next_delivery`](crate::signal::SignalRef::next_delivery);
//! any notifier's end: [`NotifierRef::wait_stopped`](crate::notifier::NotifierRef::wait_stopped).
