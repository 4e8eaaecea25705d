"""Cloudflare's compatibility dates and flags: which behaviour a Worker asked for.

A Worker names a ``compatibility_date`` and a list of ``compatibility_flags``; together they decide,
feature by feature, whether a behaviour Cloudflare changed over time is on. :func:`resolveFlags`
checks a date and a flag list the way workerd does (an unknown flag, a flag given twice, an enable
flag and its disable flag together are refused) and :class:`Compatibility` answers
``isEnabled("web_socket_auto_reply_to_close")``.

``FEATURES`` lists every feature of workerd's ``compatibility-date.capnp`` as of 2026-08-22 by its
public names: (enable flag, disable flag, the date from which it is on by default, experimental).
A flag Cloudflare adds later is unknown here and refused until it is added to the table, as an
older workerd refuses it. Pure data and computation, no I/O.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Iterable, Optional

__all__ = ["FEATURES", "Compatibility", "CompatibilityError", "parseDate", "resolveFlags"]

#: (enable flag, disable flag or None, default-on date or None, experimental)
FEATURES: tuple[tuple[str, Optional[str], Optional[str], bool], ...] = (
    ('formdata_parser_supports_files', 'formdata_parser_converts_files_to_strings', '2021-11-03', False),
    ('fetch_refuses_unknown_protocols', 'fetch_treats_unknown_protocols_as_http', '2021-11-10', False),
    ('html_rewriter_treats_esi_include_as_void_tag', None, None, False),
    ('durable_object_fetch_requires_full_url', 'durable_object_fetch_allows_relative_url', '2021-11-10', False),
    ('streams_byob_reader_detaches_buffer', 'streams_byob_reader_does_not_detach_buffer', '2021-11-10', False),
    ('streams_enable_constructors', 'streams_disable_constructors', '2022-11-30', False),
    ('workers_api_getters_setters_on_prototype', 'workers_api_getters_setters_on_instance', '2022-01-31', False),
    ('minimal_subrequests', 'no_minimal_subrequests', '2022-04-05', False),
    ('no_cots_on_external_fetch', 'cots_on_external_fetch', '2022-03-08', False),
    ('url_standard', 'url_original', '2022-10-31', False),
    ('global_navigator', 'no_global_navigator', '2022-03-21', False),
    ('capture_async_api_throws', 'do_not_capture_async_api_throws', '2022-10-31', False),
    ('r2_public_beta_bindings', 'r2_internal_beta_bindings', None, False),
    ('durable_object_alarms', None, None, False),
    ('dont_substitute_null_on_type_error', 'substitute_null_on_type_error', '2022-06-01', False),
    ('transformstream_enable_standard_constructor', 'transformstream_disable_standard_constructor', '2022-11-30', False),
    ('r2_list_honor_include', None, '2022-08-04', False),
    ('export_commonjs_default', 'export_commonjs_namespace', '2022-10-31', False),
    ('durable_object_rename', None, None, True),
    ('web_socket_compression', 'no_web_socket_compression', '2023-08-15', False),
    ('nodejs_compat', 'no_nodejs_compat', '2026-08-04', False),
    ('tcp_sockets_support', None, None, False),
    ('response_redirect_url_standard', 'response_redirect_url_original', '2023-03-14', False),
    ('experimental', None, None, True),
    ('durable_object_get_existing', None, None, True),
    ('http_headers_getsetcookie', 'no_http_headers_getsetcookie', '2023-03-01', False),
    ('dynamic_dispatch_tunnel_exceptions', 'dynamic_dispatch_treat_exceptions_as_500', '2023-03-01', False),
    ('service_binding_extra_handlers', None, None, True),
    ('no_cf_botmanagement_default', 'cf_botmanagement_default', '2023-08-01', False),
    ('urlsearchparams_delete_has_value_arg', 'no_urlsearchparams_delete_has_value_arg', '2023-07-01', False),
    ('strict_compression_checks', 'no_strict_compression_checks', '2023-08-01', False),
    ('brotli_content_encoding', 'no_brotli_content_encoding', '2024-04-29', False),
    ('strict_crypto_checks', 'no_strict_crypto_checks', '2023-08-01', False),
    ('rtti_api', None, None, True),
    ('webgpu', None, None, True),
    ('crypto_preserve_public_exponent', 'no_crypto_preserve_public_exponent', '2023-12-01', False),
    ('vectorize_query_metadata_optional', 'vectorize_query_original', '2023-11-08', False),
    ('unsafe_module', None, None, True),
    ('js_rpc', None, None, True),
    ('no_global_importscripts', 'global_importscripts', '2024-03-04', False),
    ('nodejs_als', 'no_nodejs_als', None, False),
    ('queues_json_messages', 'no_queues_json_messages', '2024-03-18', False),
    ('python_workers', None, None, False),
    ('fetcher_no_get_put_delete', 'fetcher_has_get_put_delete', '2024-03-26', False),
    ('unwrap_custom_thenables', 'no_unwrap_custom_thenables', '2024-04-01', False),
    ('rpc', 'no_rpc', '2024-04-03', False),
    ('internal_stream_byob_return_view', 'internal_stream_byob_return_undefined', '2024-05-13', False),
    ('blob_standard_mime_type', 'blob_legacy_mime_type', '2024-06-03', False),
    ('fetch_standard_url', 'fetch_legacy_url', '2024-06-03', False),
    ('nodejs_compat_v2', 'no_nodejs_compat_v2', '2026-08-04', False),
    ('global_fetch_strictly_public', 'global_fetch_private_origin', None, False),
    ('new_module_registry', 'legacy_module_registry', None, False),
    ('cache_option_enabled', 'cache_option_disabled', '2024-11-11', False),
    ('kv_direct_binding', None, None, True),
    ('allow_custom_ports', 'ignore_custom_ports', '2024-09-02', False),
    ('increase_websocket_message_size', None, None, True),
    ('internal_writable_stream_abort_clears_queue', 'internal_writable_stream_abort_does_not_clear_queue', '2024-09-02', False),
    ('python_workers_development', None, None, True),
    ('nodejs_zlib', 'no_nodejs_zlib', None, False),
    ('replica_routing', None, None, True),
    ('enable_d1_with_sessions_api', None, None, True),
    ('handle_cross_request_promise_resolution', 'no_handle_cross_request_promise_resolution', '2024-10-14', False),
    ('set_tostring_tag', 'do_not_set_tostring_tag', '2024-09-26', False),
    ('upper_case_all_http_methods', 'no_upper_case_all_http_methods', '2024-10-14', False),
    ('python_external_packages', None, None, False),
    ('disable_top_level_await_in_require', 'enable_top_level_await_in_require', '2024-12-02', False),
    ('fixup-transform-stream-backpressure', 'original-transform-stream-backpressure', '2024-12-16', False),
    ('tail_worker_user_spans', None, None, True),
    ('cache_no_cache_enabled', 'cache_no_cache_disabled', None, False),
    ('python_workers_20250116', 'no_python_workers_20250116', None, False),
    ('request_cf_overrides_cache_rules', 'no_request_cf_overrides_cache_rules', '2025-04-02', False),
    ('memory_cache_delete', None, None, True),
    ('queue_consumer_no_wait_for_wait_until', 'queue_consumer_wait_for_wait_until', None, False),
    ('nodejs_compat_populate_process_env', 'nodejs_compat_do_not_populate_process_env', None, False),
    ('cache_api_request_cf_overrides_cache_rules', 'no_cache_api_request_cf_overrides_cache_rules', '2025-05-19', False),
    ('disallow_importable_env', 'allow_importable_env', None, False),
    ('assets_navigation_prefers_asset_serving', 'assets_navigation_has_no_effect', '2025-04-01', False),
    ('cache_api_compat_flags', 'no_cache_api_compat_flags', '2025-04-19', False),
    ('python_workers_durable_objects', None, None, True),
    ('streaming_tail_worker', None, None, True),
    ('urlpattern_standard', 'urlpattern_original', '2025-05-01', False),
    ('enable_weak_ref', 'disable_weak_ref', '2025-05-05', False),
    ('request_signal_passthrough', 'no_request_signal_passthrough', None, False),
    ('enable_navigator_language', 'disable_navigator_language', '2025-05-19', False),
    ('enable_web_file_system', None, None, True),
    ('enable_abortsignal_rpc', None, None, True),
    ('allow_eval_during_startup', 'disallow_eval_during_startup', '2025-06-01', False),
    ('enable_request_signal', 'disable_request_signal', None, False),
    ('connect_pass_through', None, None, True),
    ('bind_asynclocalstorage_snapshot_to_request', 'do_not_bind_asynclocalstorage_snapshot_to-request', '2025-06-16', False),
    ('throw_on_unrecognized_import_assertion', 'ignore_unrecognized_import_assertion', '2025-06-16', False),
    ('python_workflows', 'disable_python_workflows', None, False),
    ('unsupported_process_actual_platform', None, None, True),
    ('enable_nodejs_process_v2', 'disable_nodejs_process_v2', None, False),
    ('set_event_target_this', 'no_set_event_target_this', '2025-08-01', False),
    ('set_forwardable_email_full_headers', 'set_forwardable_email_single_headers', '2025-08-01', False),
    ('enable_nodejs_http_modules', 'disable_nodejs_http_modules', None, False),
    ('pedantic_wpt', 'non_pedantic_wpt', None, False),
    ('expose_global_message_channel', 'no_expose_global_message_channel', '2025-08-15', False),
    ('enable_nodejs_http_server_modules', 'disable_nodejs_http_server_modules', None, False),
    ('python_no_global_handlers', 'disable_python_no_global_handlers', '2025-08-14', False),
    ('enable_nodejs_fs_module', 'disable_nodejs_fs_module', None, False),
    ('enable_nodejs_os_module', 'disable_nodejs_os_module', None, False),
    ('python_workers_force_new_vendor_path', None, '2025-08-11', False),
    ('remove_nodejs_compat_eol', 'add_nodejs_compat_eol', None, False),
    ('enable_validate_workflow_entrypoint', 'disable_validate_workflow_entrypoint', '2025-09-20', False),
    ('python_dedicated_snapshot', 'disable_python_dedicated_snapshot', None, False),
    ('typescript_strip_types', None, None, True),
    ('enable_nodejs_http2_module', 'disable_nodejs_http2_module', None, False),
    ('allow_insecure_inefficient_logged_eval', None, None, True),
    ('strip_authorization_on_cross_origin_redirect', 'retain_authorization_on_cross_origin_redirect', '2025-09-01', False),
    ('enhanced_error_serialization', 'legacy_error_serialization', '2026-04-21', False),
    ('enable_email_sending_queuing', 'disable_email_sending_queuing', None, False),
    ('remove_nodejs_compat_eol_v22', 'add_nodejs_compat_eol_v22', None, False),
    ('remove_nodejs_compat_eol_v23', 'add_nodejs_compat_eol_v23', None, False),
    ('remove_nodejs_compat_eol_v24', 'add_nodejs_compat_eol_v24', None, False),
    ('enable_nodejs_console_module', 'disable_nodejs_console_module', None, False),
    ('enable_nodejs_vm_module', 'disable_nodejs_vm_module', None, False),
    ('enable_nodejs_perf_hooks_module', 'disable_nodejs_perf_hooks_module', None, False),
    ('enable_global_performance_classes', 'disable_global_performance_classes', None, False),
    ('enable_nodejs_domain_module', 'disable_nodejs_domain_module', None, False),
    ('enable_nodejs_v8_module', 'disable_nodejs_v8_module', None, False),
    ('enable_nodejs_tty_module', 'disable_nodejs_tty_module', None, False),
    ('enable_nodejs_punycode_module', 'disable_nodejs_punycode_module', None, False),
    ('enable_nodejs_cluster_module', 'disable_nodejs_cluster_module', None, False),
    ('enable_nodejs_child_process_module', 'disable_nodejs_child_process_module', None, False),
    ('enable_nodejs_worker_threads_module', 'disable_nodejs_worker_threads_module', None, False),
    ('enable_nodejs_stream_wrap_module', 'disable_nodejs_stream_wrap_module', None, False),
    ('enable_nodejs_wasi_module', 'disable_nodejs_wasi_module', None, False),
    ('enable_nodejs_dgram_module', 'disable_nodejs_dgram_module', None, False),
    ('enable_nodejs_inspector_module', 'disable_nodejs_inspector_module', None, False),
    ('enable_nodejs_trace_events_module', 'disable_nodejs_trace_events_module', None, False),
    ('enable_nodejs_readline_module', 'disable_nodejs_readline_module', None, False),
    ('enable_nodejs_repl_module', 'disable_nodejs_repl_module', None, False),
    ('enable_nodejs_sqlite_module', 'disable_nodejs_sqlite_module', None, False),
    ('enable_ctx_exports', 'disable_ctx_exports', '2025-11-17', False),
    ('enable_python_external_sdk', 'disable_python_external_sdk', '2026-04-21', False),
    ('enable_fast_jsg_struct', 'disable_fast_jsg_struct', '2025-12-03', False),
    ('cache_reload_enabled', 'cache_reload_disabled', None, True),
    ('enable_streams_nodejs_v24_compat', 'disable_streams_nodejs_v24_compat', None, False),
    ('immutable_api_prototypes', 'mutable_api_prototypes', None, False),
    ('fetch_iterable_type_support', 'no_fetch_iterable_type_support', '2026-02-19', False),
    ('env_module_nullable_support', 'no_env_module_nullable_support', None, False),
    ('precise_timers', 'no_precise_timers', None, True),
    ('fetch_iterable_type_support_override_adjustment', 'no_fetch_iterable_type_support_override_adjustment', None, False),
    ('strip_bom_in_read_all_text', 'do_not_strip_bom_in_read_all_text', '2026-01-13', False),
    ('allow_irrevocable_stub_storage', None, None, False),
    ('rpc_params_dup_stubs', 'rpc_params_transfer_stubs', '2026-01-20', False),
    ('enable_nodejs_global_timers', 'no_nodejs_global_timers', None, False),
    ('streams_no_default_auto_allocate_chunk_size', 'streams_auto_allocate_chunk_size_default', None, True),
    ('python_workflows_implicit_dependencies', 'no_python_workflows_implicit_dependencies', None, False),
    ('require_returns_default_export', 'require_returns_namespace', '2026-01-22', False),
    ('python_request_headers_preserve_commas', 'disable_python_request_headers_preserve_commas', '2026-02-17', False),
    ('queue_expose_error_codes', 'no_queue_expose_error_codes', '2026-03-12', False),
    ('text_decoder_replace_surrogates', 'disable_text_decoder_replace_surrogates', '2026-02-24', False),
    ('containers_pid_namespace', 'no_containers_pid_namespace', '2026-04-01', False),
    ('delete_all_deletes_alarm', 'delete_all_preserves_alarm', '2026-02-24', False),
    ('unhandled_rejection_after_microtask_checkpoint', 'no_unhandled_rejection_after_microtask_checkpoint', '2026-03-03', False),
    ('text_decoder_cjk_decoder', 'disable_text_decoder_cjk_decoder', '2026-03-03', False),
    ('websocket_close_reason_byte_limit', 'no_websocket_close_reason_byte_limit', '2026-03-03', False),
    ('enable_version_api', None, None, True),
    ('websocket_standard_binary_type', 'no_websocket_standard_binary_type', '2026-03-17', False),
    ('writable_stream_spec_compliant_writer', 'no_writable_stream_spec_compliant_writer', '2026-03-24', False),
    ('encoder_stream_spec_compliant_backpressure', 'no_encoder_stream_spec_compliant_backpressure', '2026-03-24', False),
    ('spec_compliant_property_attributes', 'no_spec_compliant_property_attributes', None, True),
    ('workflows_preserve_non_retryable_error_message', 'workflows_replace_non_retryable_error_message', '2026-05-14', False),
    ('web_socket_auto_reply_to_close', 'web_socket_manual_reply_to_close', '2026-04-07', False),
    ('enable_ctx_version_metadata', None, None, True),
    ('no_resizable_array_buffer_in_blob', 'resizable_array_buffer_in_blob', None, False),
    ('diagnostics_channel_has_subscribers_getter', 'no_diagnostics_channel_has_subscribers_getter', '2026-05-19', False),
    ('workflows_step_rollback', None, None, True),
    ('python_process_pth_files', 'disable_python_process_pth_files', '2026-05-26', False),
    ('throw_on_not_implemented_tls_options', 'no_throw_on_not_implemented_tls_options', '2026-06-16', False),
    ('auto_grpc_convert', None, None, True),
    ('python_workers_20260610', 'no_python_workers_20260610', None, False),
    ('enable_nodejs_inspector_local_dev', None, None, True),
    ('d1_binding_jsrpc', None, None, True),
    ('workflows_bindings_rpc', None, None, True),
    ('typescript_implemented_streams', None, None, True),
    ('expose_draining_reader', None, None, True),
    ('workflows_enable_fast_engine_creation', 'workflows_disable_fast_engine_creation', '2026-08-11', False),
    ('wasm_memory_discard', None, None, True),
    ('python_workers_20260817', 'no_python_workers_20260817', None, True),
)

_BY_ENABLE = {row[0]: row for row in FEATURES}
_BY_DISABLE = {row[1]: row for row in FEATURES if row[1] is not None}


class CompatibilityError(ValueError):
    """The compatibility date or flags are not usable; the message says which and why."""


def parseDate(text: object) -> datetime.date:
    """A ``YYYY-MM-DD`` compatibility date, refused with workerd's wording if it is not one."""
    if not isinstance(text, str) or len(text) != 10 or text[4] != "-" or text[7] != "-":
        raise CompatibilityError(f"Invalid compatibility date: {text!r} (expected YYYY-MM-DD)")
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise CompatibilityError(
            f"Invalid compatibility date: {text!r} (expected YYYY-MM-DD)"
        ) from None


@dataclass(frozen=True)
class Compatibility:
    """The behaviours one Worker asked for: its date (None: today's behaviour) and its flags."""

    date: Optional[datetime.date]
    flags: tuple[str, ...] = ()

    def isEnabled(self, enableFlag: str) -> bool:
        """Whether the feature whose enable flag is ``enableFlag`` is on for this Worker.

        A Worker with no date gets every feature that has a default date (today's behaviour), as
        the issue asks: dotwist's default is Cloudflare's current behaviour.
        """
        row = _BY_ENABLE.get(enableFlag)
        if row is None:
            raise KeyError(f"No such compatibility flag: {enableFlag}")
        enable, disable, onDate, _ = row
        if enable in self.flags:
            return True
        if disable is not None and disable in self.flags:
            return False
        if onDate is None:
            return False
        return self.date is None or self.date >= datetime.date.fromisoformat(onDate)


def resolveFlags(
    date: Optional[datetime.date],
    flags: Iterable[str],
    today: Optional[datetime.date] = None,
) -> Compatibility:
    """Check a date and flags as workerd does, and return what they select.

    ``today``, when given, refuses a date in the future (workerd: "Can't set compatibility date in
    the future"); without it the date is not compared with the clock.
    """
    problems: list[str] = []
    if date is not None and today is not None and date > today:
        problems.append(f"Can't set compatibility date in the future: {date.isoformat()}")
    seen: set[str] = set()
    flagList = list(flags)
    for flag in flagList:
        if flag in seen:
            problems.append(f"Compatibility flag specified multiple times: {flag}")
            continue
        seen.add(flag)
        if flag not in _BY_ENABLE and flag not in _BY_DISABLE:
            problems.append(f"No such compatibility flag: {flag}")
    for flag in flagList:
        row = _BY_ENABLE.get(flag)
        if row is not None and row[1] is not None and row[1] in seen:
            problems.append(f"Compatibility flags are mutually contradictory: {row[0]} vs {row[1]}")
    if problems:
        raise CompatibilityError("; ".join(dict.fromkeys(problems)))
    return Compatibility(date, tuple(flagList))
