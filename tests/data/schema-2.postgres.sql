--
-- PostgreSQL database dump
--

\restrict faorjicUKNSSBC4t2IcaloTNOZK5WU0mBVadamUth98SQd1RRYNPuL6PsuscIrr

-- Dumped from database version 15.20 (Debian 15.20-0+deb12u1)
-- Dumped by pg_dump version 15.20 (Debian 15.20-0+deb12u1)

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: mlserver_aliases; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.mlserver_aliases (
    id integer NOT NULL,
    model character varying(128) NOT NULL,
    key character varying(128) NOT NULL,
    alias character varying(128) NOT NULL,
    version integer NOT NULL,
    updated timestamp without time zone NOT NULL
);


--
-- Name: mlserver_aliases_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.mlserver_aliases_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: mlserver_aliases_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.mlserver_aliases_id_seq OWNED BY public.mlserver_aliases.id;


--
-- Name: mlserver_schema; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.mlserver_schema (
    id integer NOT NULL,
    version integer NOT NULL
);


--
-- Name: mlserver_schema_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.mlserver_schema_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: mlserver_schema_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.mlserver_schema_id_seq OWNED BY public.mlserver_schema.id;


--
-- Name: mlserver_versions; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.mlserver_versions (
    id integer NOT NULL,
    model character varying(128) NOT NULL,
    key character varying(128) NOT NULL,
    version integer NOT NULL,
    status character varying(16) NOT NULL,
    created timestamp without time zone NOT NULL,
    started timestamp without time zone,
    finished timestamp without time zone,
    lease_expires timestamp without time zone,
    worker character varying(255),
    serializer character varying(64),
    sha256 character varying(64),
    signature character varying(160),
    size bigint,
    error text,
    metadata text NOT NULL,
    metrics text,
    attempts integer,
    blob bytea
);


--
-- Name: mlserver_versions_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.mlserver_versions_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: mlserver_versions_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.mlserver_versions_id_seq OWNED BY public.mlserver_versions.id;


--
-- Name: mlserver_aliases id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.mlserver_aliases ALTER COLUMN id SET DEFAULT nextval('public.mlserver_aliases_id_seq'::regclass);


--
-- Name: mlserver_schema id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.mlserver_schema ALTER COLUMN id SET DEFAULT nextval('public.mlserver_schema_id_seq'::regclass);


--
-- Name: mlserver_versions id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.mlserver_versions ALTER COLUMN id SET DEFAULT nextval('public.mlserver_versions_id_seq'::regclass);


--
-- Data for Name: mlserver_aliases; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.mlserver_aliases VALUES (1, 'sgd', '7a88944a00be86966022fb6ae600afaa', 'served', 3, '2026-12-02 20:15:49.92003');
INSERT INTO public.mlserver_aliases VALUES (4, 'sgd', '7a88944a00be86966022fb6ae600afaa', 'baseline', 1, '2026-12-02 20:15:49.941772');


--
-- Data for Name: mlserver_schema; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.mlserver_schema VALUES (1, 2);


--
-- Data for Name: mlserver_versions; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.mlserver_versions VALUES (1, 'sgd', '7a88944a00be86966022fb6ae600afaa', 1, 'FINISHED', '2026-12-02 20:15:49.833448', '2026-12-02 20:15:49.833448', '2026-12-02 20:15:49.857333', NULL, 'vm:4026531836:17159:1005781b', 'joblib', 'e1230aeb5d82f845a5144e14d65c7dddc706a80fc45cc69e26e921e7f310f50c', NULL, 1069, NULL, '{"rows":4,"n_features":2,"features":[{"name":"a","dtype":"float64"},{"name":"b","dtype":"float64"}],"targets":["t"],"libraries":{"python":"3.11.7","mlserver":"0.1.0","scikit-learn":"1.9.1","pandas":"3.1.1","numpy":"2.4.6","joblib":"1.6.0"},"kwargs":{"modkwargs":{"random_state":0},"algkwargs":{}},"scoring":null,"training_seconds":0.018061,"serialized_bytes":1069,"user":{}}', '{"promoted":true,"reason":"the first finished version of this key is always served"}', 1, '\x8004956f020000000000008c29736b6c6561726e2e6c696e6561725f6d6f64656c2e5f73746f636861737469635f6772616469656e74948c0c534744526567726573736f729493942981947d94288c046c6f7373948c0d737175617265645f6572726f72948c0770656e616c7479948c026c32948c0d6c6561726e696e675f72617465948c0a696e767363616c696e67948c07657073696c6f6e94473fb999999999999a8c05616c70686194473f1a36e2eb1c432d8c086c315f726174696f94473fc33333333333338c0d6669745f696e7465726365707494888c0773687566666c6594888c0c72616e646f6d5f7374617465944b008c07766572626f7365944b008c046574613094473f847ae147ae147b8c07706f7765725f7494473fd00000000000008c0e6561726c795f73746f7070696e6794898c1376616c69646174696f6e5f6672616374696f6e94473fb999999999999a8c106e5f697465725f6e6f5f6368616e6765944b058c0a7761726d5f737461727494898c076176657261676594898c086d61785f69746572944de8038c03746f6c94473f50624dd2f1a9fc8c05636f65665f948c136a6f626c69622e6e756d70795f7069636b6c65948c114e756d70794172726179577261707065729493942981947d94288c08737562636c617373948c056e756d7079948c076e6461727261799493948c057368617065944b0285948c056f72646572948c0143948c0564747970659468228c0564747970659493948c02663894898887945294284b038c013c944e4e4e4affffffff4affffffff4b007494628c0a616c6c6f775f6d6d617094888c1b6e756d70795f61727261795f616c69676e6d656e745f6279746573944b10756205ffffffffff5fc3729c3868e63f32b771fec839e03f9530000000000000008c0a696e746572636570745f94681e2981947d94286821682468254b018594682768286829682e68318868324b10756206ffffffffffff93cbbc340d38c53f9569000000000000008c02745f944740662000000000008c11666561747572655f6e616d65735f696e5f94681e2981947d94286821682468254b028594682768286829682b8c024f3894898887945294284b038c017c944e4e4e4affffffff4affffffff4b3f74946268318968324b10756280059592000000000000008c166e756d70792e5f636f72652e6d756c74696172726179948c0c5f7265636f6e7374727563749493948c056e756d7079948c076e6461727261799493944b0085944301629487945294284b014b02859468038c0564747970659493948c024f3894898887945294284b038c017c944e4e4e4affffffff4affffffff4b3f749462895d94288c0161948c016294657494622e953d000000000000008c0e6e5f66656174757265735f696e5f944b028c076e5f697465725f944b2c8c105f736b6c6561726e5f76657273696f6e948c05312e392e319475622e');
INSERT INTO public.mlserver_versions VALUES (2, 'sgd', '7a88944a00be86966022fb6ae600afaa', 2, 'FINISHED', '2026-12-02 20:15:49.870629', '2026-12-02 20:15:49.870629', '2026-12-02 20:15:49.882697', NULL, 'vm:4026531836:17159:1005781b', 'joblib', 'fbfb216c1a840d06498c871cc5238f695d4726011a944214d8a15b27d364a827', NULL, 1101, NULL, '{"rows":4,"n_features":2,"features":[{"name":"a","dtype":"float64"},{"name":"b","dtype":"float64"}],"targets":["t"],"libraries":{"python":"3.11.7","mlserver":"0.1.0","scikit-learn":"1.9.1","pandas":"3.1.1","numpy":"2.4.6","joblib":"1.6.0"},"base_version":1,"kwargs":{"modkwargs":{"random_state":0},"algkwargs":{}},"scoring":null,"training_seconds":0.002149,"serialized_bytes":1101,"user":{}}', '{"prequential":{"score":0.9456000068048606,"scoring":"score","rows":4},"promoted":true,"reason":"promote=always"}', 1, '\x8004956f020000000000008c29736b6c6561726e2e6c696e6561725f6d6f64656c2e5f73746f636861737469635f6772616469656e74948c0c534744526567726573736f729493942981947d94288c046c6f7373948c0d737175617265645f6572726f72948c0770656e616c7479948c026c32948c0d6c6561726e696e675f72617465948c0a696e767363616c696e67948c07657073696c6f6e94473fb999999999999a8c05616c70686194473f1a36e2eb1c432d8c086c315f726174696f94473fc33333333333338c0d6669745f696e7465726365707494888c0773687566666c6594888c0c72616e646f6d5f7374617465944b008c07766572626f7365944b008c046574613094473f847ae147ae147b8c07706f7765725f7494473fd00000000000008c0e6561726c795f73746f7070696e6794898c1376616c69646174696f6e5f6672616374696f6e94473fb999999999999a8c106e5f697465725f6e6f5f6368616e6765944b058c0a7761726d5f737461727494898c076176657261676594898c086d61785f69746572944de8038c03746f6c94473f50624dd2f1a9fc8c05636f65665f948c136a6f626c69622e6e756d70795f7069636b6c65948c114e756d70794172726179577261707065729493942981947d94288c08737562636c617373948c056e756d7079948c076e6461727261799493948c057368617065944b0285948c056f72646572948c0143948c0564747970659468228c0564747970659493948c02663894898887945294284b038c013c944e4e4e4affffffff4affffffff4b007494628c0a616c6c6f775f6d6d617094888c1b6e756d70795f61727261795f616c69676e6d656e745f6279746573944b10756205ffffffffffedd2202ea179e63f2800aec1e92ae03f9552000000000000008c0a696e746572636570745f94681e2981947d94286821682468254b018594682768286829682b8c02663894898887945294284b03682f4e4e4e4affffffff4affffffff4b0074946268318868324b10756204ffffffff12869d18c326c53f9569000000000000008c02745f94474066a000000000008c11666561747572655f6e616d65735f696e5f94681e2981947d94286821682468254b028594682768286829682b8c024f3894898887945294284b038c017c944e4e4e4affffffff4affffffff4b3f74946268318968324b10756280059592000000000000008c166e756d70792e5f636f72652e6d756c74696172726179948c0c5f7265636f6e7374727563749493948c056e756d7079948c076e6461727261799493944b0085944301629487945294284b014b02859468038c0564747970659493948c024f3894898887945294284b038c017c944e4e4e4affffffff4affffffff4b3f749462895d94288c0161948c016294657494622e953d000000000000008c0e6e5f66656174757265735f696e5f944b028c076e5f697465725f944b018c105f736b6c6561726e5f76657273696f6e948c05312e392e319475622e');
INSERT INTO public.mlserver_versions VALUES (3, 'sgd', '7a88944a00be86966022fb6ae600afaa', 3, 'FINISHED', '2026-12-02 20:15:49.908894', '2026-12-02 20:15:49.908894', '2026-12-02 20:15:49.919379', NULL, 'vm:4026531836:17159:1005781b', 'joblib', '1f169e46ab37e2d9ebc228817efa4eb894f04def0708610f258dc554355ba872', NULL, 1101, NULL, '{"rows":4,"n_features":2,"features":[{"name":"a","dtype":"float64"},{"name":"b","dtype":"float64"}],"targets":["t"],"libraries":{"python":"3.11.7","mlserver":"0.1.0","scikit-learn":"1.9.1","pandas":"3.1.1","numpy":"2.4.6","joblib":"1.6.0"},"base_version":2,"kwargs":{"modkwargs":{"random_state":0},"algkwargs":{}},"scoring":null,"training_seconds":0.002062,"serialized_bytes":1101,"user":{}}', '{"prequential":{"score":0.946224700824597,"scoring":"score","rows":4},"promoted":true,"reason":"promote=always"}', 1, '\x8004956f020000000000008c29736b6c6561726e2e6c696e6561725f6d6f64656c2e5f73746f636861737469635f6772616469656e74948c0c534744526567726573736f729493942981947d94288c046c6f7373948c0d737175617265645f6572726f72948c0770656e616c7479948c026c32948c0d6c6561726e696e675f72617465948c0a696e767363616c696e67948c07657073696c6f6e94473fb999999999999a8c05616c70686194473f1a36e2eb1c432d8c086c315f726174696f94473fc33333333333338c0d6669745f696e7465726365707494888c0773687566666c6594888c0c72616e646f6d5f7374617465944b008c07766572626f7365944b008c046574613094473f847ae147ae147b8c07706f7765725f7494473fd00000000000008c0e6561726c795f73746f7070696e6794898c1376616c69646174696f6e5f6672616374696f6e94473fb999999999999a8c106e5f697465725f6e6f5f6368616e6765944b058c0a7761726d5f737461727494898c076176657261676594898c086d61785f69746572944de8038c03746f6c94473f50624dd2f1a9fc8c05636f65665f948c136a6f626c69622e6e756d70795f7069636b6c65948c114e756d70794172726179577261707065729493942981947d94288c08737562636c617373948c056e756d7079948c076e6461727261799493948c057368617065944b0285948c056f72646572948c0143948c0564747970659468228c0564747970659493948c02663894898887945294284b038c013c944e4e4e4affffffff4affffffff4b007494628c0a616c6c6f775f6d6d617094888c1b6e756d70795f61727261795f616c69676e6d656e745f6279746573944b10756205ffffffffffa1060c18db8ae63f5f8c2d49551ce03f9552000000000000008c0a696e746572636570745f94681e2981947d94286821682468254b018594682768286829682b8c02663894898887945294284b03682f4e4e4e4affffffff4affffffff4b0074946268318868324b10756204ffffffff3d0bac339815c53f9569000000000000008c02745f944740672000000000008c11666561747572655f6e616d65735f696e5f94681e2981947d94286821682468254b028594682768286829682b8c024f3894898887945294284b038c017c944e4e4e4affffffff4affffffff4b3f74946268318968324b10756280059592000000000000008c166e756d70792e5f636f72652e6d756c74696172726179948c0c5f7265636f6e7374727563749493948c056e756d7079948c076e6461727261799493944b0085944301629487945294284b014b02859468038c0564747970659493948c024f3894898887945294284b038c017c944e4e4e4affffffff4affffffff4b3f749462895d94288c0161948c016294657494622e953d000000000000008c0e6e5f66656174757265735f696e5f944b028c076e5f697465725f944b018c105f736b6c6561726e5f76657273696f6e948c05312e392e319475622e');
INSERT INTO public.mlserver_versions VALUES (4, 'sgd', '13ca14c45cf10ce1f11a1e1bacee80b1', 1, 'FAILED', '2026-12-02 20:15:49.947006', '2026-12-02 20:15:49.947006', '2026-12-02 20:15:49.950534', NULL, 'vm:4026531836:17159:1005781b', NULL, NULL, NULL, NULL, 'TypeError: BaseSGDRegressor.fit() got an unexpected keyword argument ''nope''', '{}', NULL, 1, NULL);


--
-- Name: mlserver_aliases_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.mlserver_aliases_id_seq', 4, true);


--
-- Name: mlserver_schema_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.mlserver_schema_id_seq', 1, true);


--
-- Name: mlserver_versions_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.mlserver_versions_id_seq', 4, true);


--
-- Name: mlserver_aliases mlserver_aliases_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.mlserver_aliases
    ADD CONSTRAINT mlserver_aliases_pkey PRIMARY KEY (id);


--
-- Name: mlserver_schema mlserver_schema_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.mlserver_schema
    ADD CONSTRAINT mlserver_schema_pkey PRIMARY KEY (id);


--
-- Name: mlserver_versions mlserver_versions_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.mlserver_versions
    ADD CONSTRAINT mlserver_versions_pkey PRIMARY KEY (id);


--
-- Name: aliasrow_model_key_alias; Type: INDEX; Schema: public; Owner: -
--

CREATE UNIQUE INDEX aliasrow_model_key_alias ON public.mlserver_aliases USING btree (model, key, alias);


--
-- Name: mlserver_versions_one_running; Type: INDEX; Schema: public; Owner: -
--

CREATE UNIQUE INDEX mlserver_versions_one_running ON public.mlserver_versions USING btree (model, key) WHERE ((status)::text = 'RUNNING'::text);


--
-- Name: versionrow_model_key_version; Type: INDEX; Schema: public; Owner: -
--

CREATE UNIQUE INDEX versionrow_model_key_version ON public.mlserver_versions USING btree (model, key, version);


--
-- PostgreSQL database dump complete
--

\unrestrict faorjicUKNSSBC4t2IcaloTNOZK5WU0mBVadamUth98SQd1RRYNPuL6PsuscIrr

